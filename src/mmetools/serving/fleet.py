"""Fleet load tests: many TargetModels of one endpoint under a traffic mix, through boto3
``invoke_endpoint`` (locust, :mod:`mmetools.serving.fleet_locustfile`).

Every request is logged by the locust process; from that log: the hit ratio and the share of
requests that waited for a load (the local endpoint says which in a response header; against a
real endpoint a request slower than ``cold_threshold_ms`` counts as cold), p50/p99 of warm and of
cold requests, wrong answers (checked against the fixtures' expected outputs), errors by code.
When the endpoint is the local one, its admin metrics give the evictions per minute, each
model's measured memory and load time, and the model budget: the capacity plan's predicted hit
ratio is then set beside the measured one.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmetools.core.errors import LoadTestError, UsageError
from mmetools.model.cases import EnsembleSignature, FixtureCase, load_fixtures
from mmetools.model.folder import model_folder, parse_artifact_name
from mmetools.release.loadtest import LoadStep, run_locust
from mmetools.serving.capacity import ModelProfile, che_hit_ratio, simulated_hit_ratio
from mmetools.serving.metrics import percentile
from mmetools.serving.traffic import TrafficMix
from mmetools.testing.artifact_test import request_body

logger = logging.getLogger(__name__)

FLEET_LOCUSTFILE = Path(__file__).with_name("fleet_locustfile.py")
HIT = "hit"


def fixture_requests(model_dir: Path) -> list[dict[str, Any]]:
    """The fixture cases of a model folder as invoke requests with their expected outputs."""
    model = model_folder(model_dir)
    signature = EnsembleSignature.from_config(model.ensemble().config)
    cases = load_fixtures(model)
    if not cases:
        raise UsageError(f"{model_dir}: no fixture cases to send")
    return [_request(case, list(signature.outputs)) for case in cases]


def _request(case: FixtureCase, outputs: list[str]) -> dict[str, Any]:
    names = [e.name for e in case.expected] or outputs
    body, content_type = request_body(case, names)
    expected = []
    for e in case.expected:
        values = e.array.reshape(-1).tolist()
        if e.datatype == "BYTES":
            values = [
                base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()
                for v in values
            ]
        expected.append(
            {"name": e.name, "datatype": e.datatype, "shape": list(e.shape), "data": values,
             "atol": e.atol, "rtol": e.rtol}
        )  # fmt: skip
    return {
        "body": base64.b64encode(body).decode(),
        "content_type": content_type,
        "expected": expected,
    }


def model_dir_for(target_model: str, root: Path) -> Path:
    """``models/<name>`` of a TargetModel named ``[...]/<name>_<version>.tar.gz``."""
    ref = parse_artifact_name(Path(target_model))
    folder = root / "models" / ref.name
    if not folder.is_dir():
        raise UsageError(f"{target_model}: no model folder {folder} for its fixtures")
    return folder


@dataclass(frozen=True)
class Latencies:
    requests: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latencies:
        return cls(len(values), percentile(list(values), 50), percentile(list(values), 99))


@dataclass(frozen=True)
class FleetResult:
    endpoint: str
    endpoint_url: str
    mix: TrafficMix
    step: LoadStep
    requests: int
    hit_ratio: float
    waited_share: float
    warm: Latencies
    cold: Latencies
    wrong_outputs: int
    errors: dict[str, int]
    classified_by: str  # "endpoint header" or "latency > N ms"
    per_model: dict[str, dict[str, float]]
    timeline: tuple[tuple[float, float, bool], ...]  # (seconds, ms, hit) per request
    evictions: int | None = None
    evictions_per_minute: float | None = None
    budget_bytes: int | None = None
    profiles: tuple[ModelProfile, ...] = ()
    predicted_hit_ratio: float | None = None  # simulated LRU over this many requests
    steady_hit_ratio: float | None = None  # Che's approximation
    endpoint_metrics: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "endpoint_url": self.endpoint_url,
            "mix": self.mix.as_json(),
            "step": self.step.__dict__,
            "requests": self.requests,
            "hit_ratio": self.hit_ratio,
            "waited_share": self.waited_share,
            "warm": self.warm.__dict__,
            "cold": self.cold.__dict__,
            "wrong_outputs": self.wrong_outputs,
            "errors": self.errors,
            "classified_by": self.classified_by,
            "per_model": self.per_model,
            "evictions": self.evictions,
            "evictions_per_minute": self.evictions_per_minute,
            "budget_bytes": self.budget_bytes,
            "profiles": [p.__dict__ for p in self.profiles],
            "predicted_hit_ratio": self.predicted_hit_ratio,
            "steady_hit_ratio": self.steady_hit_ratio,
            "endpoint_metrics": self.endpoint_metrics,
        }


def _admin(url: str, path: str) -> dict[str, Any] | None:
    """The local endpoint's admin document, or None for an endpoint that has none."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}{path}", timeout=10) as answer:
            document = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def run_fleet(
    endpoint: str,
    endpoint_url: str,
    mix: TrafficMix,
    requests_by_model: dict[str, list[dict[str, Any]]],
    *,
    users: int = 1,
    seconds: float = 60.0,
    rate: float | None = None,
    seed: int = 0,
    cold_threshold_ms: float = 1000.0,
) -> FleetResult:
    """One locust run of the mix against the endpoint, and its figures (see the module)."""
    before = _admin(endpoint_url, "/admin/metrics")
    with tempfile.TemporaryDirectory(prefix="mmetools-fleet-") as scratch:
        log = Path(scratch) / "requests.jsonl"
        config = {
            "endpoint": endpoint,
            "endpoint_url": endpoint_url,
            "seed": seed,
            "log": str(log),
            "models": [
                {"target_model": m, "share": s, "requests": requests_by_model[m]}
                for m, s in zip(mix.models, mix.shares)
                if s > 0
            ],
        }
        step = run_locust(
            config, users, seconds, Path(scratch), rate=rate, label=f"fleet, {mix.description}",
            locustfile=FLEET_LOCUSTFILE,
        )  # fmt: skip
        if not log.is_file():
            raise LoadTestError("the fleet's locust process wrote no request log")
        lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    after = _admin(endpoint_url, "/admin/metrics")
    models = _admin(endpoint_url, "/admin/models")
    return summarize(
        endpoint, endpoint_url, mix, step, lines, before, after, models, cold_threshold_ms, seed
    )


def summarize(
    endpoint: str,
    endpoint_url: str,
    mix: TrafficMix,
    step: LoadStep,
    lines: list[dict[str, Any]],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    models: dict[str, Any] | None,
    cold_threshold_ms: float,
    seed: int = 0,
) -> FleetResult:
    """The figures of a fleet run from its request log and the endpoint's admin documents."""
    answered = [r for r in lines if not r["error"] or r["error"] == "AssertionError"]
    by_header = bool(answered) and all(r["state"] for r in answered)
    classified = "endpoint header" if by_header else f"latency > {cold_threshold_ms:g} ms"

    def is_hit(r: dict[str, Any]) -> bool:
        return bool(r["state"] == HIT) if by_header else float(r["ms"]) <= cold_threshold_ms

    hits = [r for r in answered if is_hit(r)]
    colds = [r for r in answered if not is_hit(r)]
    errors: dict[str, int] = {}
    for r in lines:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    per_model: dict[str, dict[str, float]] = {}
    for name in sorted({r["model"] for r in lines}):
        mine = [r for r in answered if r["model"] == name]
        warm = Latencies.of([r["ms"] for r in mine if is_hit(r)])
        per_model[name] = {
            "requests": len(mine),
            "hit_ratio": (sum(1 for r in mine if is_hit(r)) / len(mine)) if mine else math.nan,
            "warm_p50_ms": warm.p50_ms,
            "warm_p99_ms": warm.p99_ms,
        }
    total = len(answered)
    result = FleetResult(
        endpoint, endpoint_url, mix, step, len(lines),
        len(hits) / total if total else math.nan,
        len(colds) / total if total else math.nan,
        Latencies.of([r["ms"] for r in hits]), Latencies.of([r["ms"] for r in colds]),
        sum(1 for r in lines if r["error"] == "AssertionError"), errors, classified, per_model,
        tuple((r["t"], r["ms"], is_hit(r)) for r in answered),
    )  # fmt: skip
    if before is None or after is None or models is None:
        return result
    evictions = int(after["evictions"]) - int(before["evictions"])
    minutes = max(step.seconds / 60, 1e-9)
    profiles = _profiles(mix, after, models)
    budget = int(models["budget_bytes"])
    predicted = steady = None
    if profiles and all(p.memory_bytes > 0 for p in profiles if p.share > 0):
        predicted = simulated_hit_ratio(profiles, budget, total, seed=seed)
        steady = che_hit_ratio(profiles, budget)
    from dataclasses import replace

    return replace(
        result,
        evictions=evictions,
        evictions_per_minute=evictions / minutes,
        budget_bytes=budget,
        profiles=profiles,
        predicted_hit_ratio=predicted,
        steady_hit_ratio=steady,
        endpoint_metrics=after,
    )


def _profiles(
    mix: TrafficMix, metrics: dict[str, Any], models: dict[str, Any]
) -> tuple[ModelProfile, ...]:
    """Each model's measured memory and load time (the mean of measured ones for a model the run
    never loaded)."""
    measured: dict[str, int] = {k: int(v) for k, v in models.get("measured_bytes", {}).items()}
    loads = {
        name: float(doc.get("load_seconds") or 0.0) + float(doc.get("download_seconds") or 0.0)
        for name, doc in metrics.get("per_target_model", {}).items()
        if doc.get("load_seconds") is not None
    }
    mean_memory = int(sum(measured.values()) / len(measured)) if measured else 0
    mean_load = sum(loads.values()) / len(loads) if loads else 0.0
    return tuple(
        ModelProfile(m, measured.get(m, mean_memory), loads.get(m, mean_load), s)
        for m, s in zip(mix.models, mix.shares)
    )
