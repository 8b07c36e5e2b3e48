"""Accepting a reviewed change: ``models/<name>/diff-acceptance.toml``.

``mmetools diff models/<name> --accept`` writes it after a diff that is over its thresholds: the
candidate (its version and the identity of its own files, weights included:
:mod:`mmetools.build.identity`), the previous version it was compared with (its version and the
sha256 of its published tarball), the number of inputs, any renamed or removed output, and the
measured figures per output. It is committed with the change, so the merge request shows it.

The diff then passes while it measures the same change again:

- the same model, candidate version, candidate identity, previous version and previous sha256,
  the same number of inputs, the same outputs (kinds, element counts, renamed and removed ones):
  exactly;
- label outputs: the same number of flips, exactly;
- float outputs: max abs difference and mean abs difference each within 1% (relative) or 1e-6
  (absolute) of the accepted figure, and the elements beyond tolerance within 1% of the elements
  (at least 1 element): the same change measured on another CPU (CI vs a laptop) may differ in
  the last bits.

So an acceptance never carries over to another change (other files: another identity), to
another previous version, or to new weights; inputs that fail on one version only are never
acceptable.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import ConfigError, UsageError
from mmetools.model.folder import ModelFolder
from mmetools.release.diff.compare import AcceptanceCheck, DiffReport

logger = logging.getLogger(__name__)

ACCEPTANCE_FILE = "diff-acceptance.toml"
ACCEPTANCE_FORMAT = 1
FIGURE_RTOL = 0.01
FIGURE_ATOL = 1e-6
BEYOND_SLACK_SHARE = 0.01


@dataclass(frozen=True)
class OutputFigures:
    output: str
    kind: str
    elements: int
    flips: int = 0
    beyond: int = 0
    max_abs: float = 0.0
    abs_diff_mean: float = 0.0


@dataclass(frozen=True)
class Acceptance:
    """One diff's figures: the accepted ones (read from the file) or the measured ones."""

    model: str
    candidate_version: int
    candidate_identity: str
    previous_version: int
    previous_sha256: str
    inputs: int
    outputs: tuple[OutputFigures, ...]
    removed: tuple[str, ...] = ()
    renamed: tuple[str, ...] = ()  # "OLD -> NEW"


def measured(report: DiffReport) -> Acceptance:
    """The figures of ``report`` (a diff that ran against a previous version)."""
    assert report.previous is not None
    return Acceptance(
        model=report.model,
        candidate_version=report.candidate_version,
        candidate_identity=report.candidate_identity,
        previous_version=report.previous.version,
        previous_sha256=report.previous_sha256,
        inputs=report.cases,
        outputs=tuple(
            OutputFigures(
                o.output,
                o.kind,
                o.elements,
                flips=len(o.flips),
                beyond=o.beyond,
                max_abs=o.max_abs,
                abs_diff_mean=float(o.summary.get("abs_diff_mean", 0.0)),
            )
            for o in sorted(report.outputs, key=lambda o: o.output)
        ),
        removed=report.removed,
        renamed=tuple(f"{old} -> {new}" for old, new in report.renamed),
    )


def _close(measured_value: float, accepted: float) -> bool:
    if math.isinf(measured_value) or math.isinf(accepted):
        return measured_value == accepted
    return abs(measured_value - accepted) <= FIGURE_ATOL + FIGURE_RTOL * abs(accepted)


def mismatches(accepted: Acceptance, now: Acceptance) -> tuple[str, ...]:
    """Why the accepted figures are not this diff's (empty: they match)."""
    found: list[str] = []
    for key in ("model", "candidate_version", "candidate_identity", "previous_version",
                "previous_sha256", "inputs", "removed", "renamed"):  # fmt: skip
        was, is_now = getattr(accepted, key), getattr(now, key)
        if was != is_now:
            found.append(f"{key}: accepted {_shown(was)}, this diff {_shown(is_now)}")
    before = {o.output: o for o in accepted.outputs}
    after = {o.output: o for o in now.outputs}
    if sorted(before) != sorted(after):
        found.append(f"outputs: accepted {sorted(before)}, this diff {sorted(after)}")
    for name in sorted(set(before) & set(after)):
        a, m = before[name], after[name]
        if (a.kind, a.elements) != (m.kind, m.elements):
            found.append(
                f"{name}: accepted {a.kind} of {a.elements} elements, this diff {m.kind} of "
                f"{m.elements}"
            )
            continue
        if m.kind == "label" and a.flips != m.flips:
            found.append(f"{name}: accepted {a.flips} flips, this diff {m.flips}")
        if m.kind == "float":
            slack = max(1, math.floor(BEYOND_SLACK_SHARE * m.elements))
            if abs(a.beyond - m.beyond) > slack:
                found.append(
                    f"{name}: accepted {a.beyond} elements beyond tolerance, this diff "
                    f"{m.beyond} (allowed +/- {slack})"
                )
            for key in ("max_abs", "abs_diff_mean"):
                if not _close(getattr(m, key), getattr(a, key)):
                    found.append(
                        f"{name}: accepted {key} {getattr(a, key):.6g}, this diff "
                        f"{getattr(m, key):.6g} (allowed {FIGURE_RTOL:.0%} or {FIGURE_ATOL:g})"
                    )
    return tuple(found)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "none"
    return str(value)


# -------------------------------------------------------------------------------------------------
# The file


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, float):
        return "inf" if math.isinf(value) else repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def acceptance_text(acceptance: Acceptance, command: str) -> str:
    lines = [
        f"# A reviewed change of {acceptance.model}'s predictions, written by `{command}`.",
        "# Commit it with the change. The diff passes only while it measures these figures again",
        "# for exactly this candidate against exactly this previous version (tolerance: "
        "docs/release-evidence.md).",
        f"format = {ACCEPTANCE_FORMAT}",
    ]
    for key in ("model", "candidate_version", "candidate_identity", "previous_version",
                "previous_sha256", "inputs", "removed", "renamed"):  # fmt: skip
        lines.append(f"{key} = {_toml_value(getattr(acceptance, key))}")
    for o in acceptance.outputs:
        lines += ["", f"[outputs.{json.dumps(o.output)}]", f'kind = "{o.kind}"']
        lines.append(f"elements = {o.elements}")
        if o.kind == "label":
            lines.append(f"flips = {o.flips}")
        else:
            lines += [
                f"beyond = {o.beyond}",
                f"max_abs = {_toml_value(o.max_abs)}",
                f"abs_diff_mean = {_toml_value(o.abs_diff_mean)}",
            ]
    return "\n".join(lines) + "\n"


_TOP = {"format": int, "model": str, "candidate_version": int, "candidate_identity": str,
        "previous_version": int, "previous_sha256": str, "inputs": int, "removed": list,
        "renamed": list, "outputs": dict}  # fmt: skip
_OUTPUT = {"kind": str, "elements": int, "flips": int, "beyond": int, "max_abs": float,
           "abs_diff_mean": float}  # fmt: skip


def _checked(path: Path, where: str, raw: Mapping[str, Any], known: Mapping[str, type]) -> None:
    for key, value in raw.items():
        expected = known.get(key)
        if expected is None:
            raise ConfigError(
                f"{path}: {where}has no setting '{key}' (known: {', '.join(sorted(known))})"
            )
        good = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float:
            good = isinstance(value, (int, float)) and not isinstance(value, bool)
            good = good and not math.isnan(value) and value >= 0
        if expected is int:
            good = good and value >= 0
        if not good:
            raise ConfigError(
                f"{path}: {where}{key} must be {_KINDS[expected]}, got {value!r} (rerun "
                "`mmetools diff --accept` after reviewing the change to write it again)"
            )


_KINDS = {int: "an integer >= 0", float: "a number >= 0", str: "a string", list: "a list",
          dict: "a table"}  # fmt: skip


def read_acceptance(model: ModelFolder) -> Acceptance | None:
    """``models/<name>/diff-acceptance.toml``, or None when there is none."""
    path = model.path / ACCEPTANCE_FILE
    if not path.is_file():
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML file: {e}") from e
    _checked(path, "", raw, _TOP)
    missing = sorted(set(_TOP) - set(raw))
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)} (rerun `mmetools diff --accept`)")
    if raw["format"] != ACCEPTANCE_FORMAT:
        raise ConfigError(f"{path}: format {raw['format']} is not {ACCEPTANCE_FORMAT}")
    outputs = []
    for name, values in raw["outputs"].items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [outputs.{name}] must be a table")
        _checked(path, f"[outputs.{name}] ", values, _OUTPUT)
        if values.get("kind") not in ("float", "label") or "elements" not in values:
            raise ConfigError(f"{path}: [outputs.{name}] needs kind (float or label) and elements")
        outputs.append(
            OutputFigures(
                name,
                values["kind"],
                values["elements"],
                values.get("flips", 0),
                values.get("beyond", 0),
                float(values.get("max_abs", 0.0)),
                float(values.get("abs_diff_mean", 0.0)),
            )
        )
    return Acceptance(
        raw["model"],
        raw["candidate_version"],
        raw["candidate_identity"],
        raw["previous_version"],
        raw["previous_sha256"],
        raw["inputs"],
        tuple(sorted(outputs, key=lambda o: o.output)),
        tuple(str(v) for v in raw["removed"]),
        tuple(str(v) for v in raw["renamed"]),
    )


def check_acceptance(model: ModelFolder, report: DiffReport) -> AcceptanceCheck | None:
    """The model's recorded acceptance against this diff (None: none recorded, or no diff)."""
    accepted = read_acceptance(model)
    if accepted is None or report.previous is None:
        return None
    reasons = mismatches(accepted, measured(report))
    return AcceptanceCheck(str(model.path / ACCEPTANCE_FILE), not reasons, reasons)


def record_acceptance(model: ModelFolder, report: DiffReport, command: str) -> Path | None:
    """Write the acceptance of ``report``'s change; None when there is nothing to accept (the
    diff passes within its thresholds). UsageError when it cannot be accepted."""
    if report.previous is None:
        raise UsageError(f"nothing to accept for {model.name}: {report.note}")
    if report.errors:
        raise UsageError(
            f"{model.name}: inputs that fail on one version only cannot be accepted; fix them "
            "first: " + "; ".join(report.errors)
        )
    if not report.changes:
        return None
    path = model.path / ACCEPTANCE_FILE
    write_text_atomically(path, acceptance_text(measured(report), command))
    logger.info("wrote %s", path)
    return path


def accept_command(report: DiffReport) -> str:
    """What to run to accept ``report``'s change after reviewing it."""
    return f"mmetools diff {report.model_dir or 'models/' + report.model} --accept"


__all__ = [
    "ACCEPTANCE_FILE",
    "Acceptance",
    "OutputFigures",
    "accept_command",
    "acceptance_text",
    "check_acceptance",
    "measured",
    "mismatches",
    "read_acceptance",
    "record_acceptance",
]
