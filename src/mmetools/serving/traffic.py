"""Traffic mixes for fleet load tests and capacity plans: the share of requests each TargetModel
gets.

- ``uniform``: every model the same share;
- ``zipf:S``: the k-th model (in the order given) gets a share proportional to 1/k^S, the
  popularity law of many model fleets (a few hot models, a long cold tail);
- a CSV file with a header ``target_model,rate`` (requests per second or any relative weight):
  the shares are the rates normalised; models missing from the CSV get none.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmetools.core.errors import UsageError


@dataclass(frozen=True)
class TrafficMix:
    """``shares[i]`` of requests go to ``models[i]``; shares sum to 1."""

    description: str
    models: tuple[str, ...]
    shares: tuple[float, ...]

    def share_of(self, model: str) -> float:
        return dict(zip(self.models, self.shares)).get(model, 0.0)

    def as_json(self) -> dict[str, object]:
        return {"description": self.description, "shares": dict(zip(self.models, self.shares))}


def zipf_shares(count: int, exponent: float) -> list[float]:
    weights = [1.0 / (k**exponent) for k in range(1, count + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def parse_mix(spec: str, models: Sequence[str]) -> TrafficMix:
    """``uniform``, ``zipf:S`` or a CSV path, over ``models`` (usage errors name the problem)."""
    if not models:
        raise UsageError("the traffic mix needs at least one model")
    text = spec.strip()
    if text == "uniform":
        return TrafficMix("uniform", tuple(models), tuple([1.0 / len(models)] * len(models)))
    if text.startswith("zipf"):
        _, _, value = text.partition(":")
        try:
            exponent = float(value) if value else 1.0
        except ValueError:
            raise UsageError(
                f"--mix {spec!r}: write zipf:S with a number S, e.g. zipf:1.2"
            ) from None
        if not math.isfinite(exponent) or exponent < 0:
            raise UsageError(f"--mix {spec!r}: the Zipf exponent must be >= 0")
        return TrafficMix(
            f"zipf:{exponent:g}", tuple(models), tuple(zipf_shares(len(models), exponent))
        )
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"--mix {spec!r}: not uniform, zipf:S or a CSV file")
    return _csv_mix(path, models)


def _csv_mix(path: Path, models: Sequence[str]) -> TrafficMix:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{path}: cannot read the traffic mix: {e}") from e
    rates: dict[str, float] = {}
    for number, row in enumerate(rows, start=2):
        name, value = (row.get("target_model") or "").strip(), (row.get("rate") or "").strip()
        if not name:
            raise UsageError(
                f"{path}:{number}: column 'target_model' is empty (header: target_model,rate)"
            )
        try:
            rate = float(value)
        except ValueError:
            raise UsageError(f"{path}:{number}: rate {value!r} of {name} is not a number") from None
        if not math.isfinite(rate) or rate < 0:
            raise UsageError(f"{path}:{number}: rate of {name} must be >= 0")
        if name not in models:
            raise UsageError(f"{path}:{number}: {name} is not one of the models under test")
        rates[name] = rates.get(name, 0.0) + rate
    total = sum(rates.values())
    if total <= 0:
        raise UsageError(f"{path}: every rate is 0: no request would be sent")
    return TrafficMix(
        f"rates from {path.name}", tuple(models), tuple(rates.get(m, 0.0) / total for m in models)
    )
