"""Regenerating fixtures' expected values from a reference run (datatypes, tolerances,
descriptions and inputs stay as they are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmetools.core.errors import ConfigError, FixtureError, ModelRunError
from mmetools.model.cases import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    EnsembleSignature,
    fixture_paths,
    format_fixture,
    parse_case,
    read_fixture_document,
    update_expected,
    write_fixture,
)
from mmetools.model.folder import ModelFolder
from mmetools.model.reference.runner import ReferenceRunner


@dataclass(frozen=True)
class ExpectedChange:
    """How one expected output of a case changed. ``status`` is "unchanged", "within tolerance"
    (float values moved, but less than the output's atol/rtol), "changed" or "shape changed";
    ``max_abs_change`` is None for BYTES and when the shape changed."""

    case: str
    output: str
    status: str
    max_abs_change: float | None
    values_changed: int
    values: int


@dataclass(frozen=True)
class RegeneratedCase:
    case: str
    path: Path
    changes: tuple[ExpectedChange, ...]
    written: bool

    @property
    def changed(self) -> bool:
        return any(c.status != "unchanged" for c in self.changes)


def regenerate_fixtures(
    model: ModelFolder, case_names: Sequence[str] = (), *, write: bool = True
) -> list[RegeneratedCase]:
    """Recompute the ``expected`` data (and shape) of every case, or of ``case_names``, with the
    reference runner; datatypes, tolerances, descriptions and inputs are kept. All cases are
    computed before any file is written; each file is replaced atomically, and only when its
    text changes."""
    try:
        ensemble = model.ensemble()
    except ConfigError as e:
        raise FixtureError(
            f"{model.path}: cannot regenerate fixtures of '{model.name}': {e}"
        ) from e
    signature = EnsembleSignature.from_config(ensemble.config)
    paths = fixture_paths(model)
    if case_names:
        by_name = {p.stem: p for p in paths}
        unknown = [n for n in case_names if n not in by_name]
        if unknown:
            raise FixtureError(
                f"{model.fixtures_dir}: no case named {', '.join(repr(n) for n in unknown)} "
                f"(cases: {', '.join(by_name) or 'none'})"
            )
        paths = [by_name[n] for n in dict.fromkeys(case_names)]
    if not paths:
        raise FixtureError(
            f"{model.fixtures_dir}: model '{model.name}' has no fixture cases (*.json)"
        )
    pending: list[tuple[Path, dict[str, Any], str, tuple[ExpectedChange, ...]]] = []
    with ReferenceRunner(model) as runner:
        for path in paths:
            document = read_fixture_document(path)
            case = parse_case(document, path, signature, model.name, check_expected=False)
            try:
                outputs = runner.run(case.input_arrays())
            except ModelRunError as e:
                raise ModelRunError(f"case '{case.name}' ({path}): {e}") from e
            try:
                updated = update_expected(document, outputs)
            except FixtureError as e:
                raise FixtureError(f"{path}: {e}") from e
            parse_case(updated, path, signature, model.name)  # the new values must fit too
            changes = tuple(
                _expected_change(case.name, name, document["expected"][name], entry)
                for name, entry in updated["expected"].items()
            )
            pending.append((path, updated, format_fixture(updated), changes))
    results: list[RegeneratedCase] = []
    for path, updated, text, changes in pending:
        written = False
        if write and path.read_text(encoding="utf-8") != text:
            write_fixture(path, updated)
            written = True
        results.append(RegeneratedCase(path.stem, path, changes, written))
    return results


def _expected_change(case: str, output: str, old: Any, new: Mapping[str, Any]) -> ExpectedChange:
    new_data = list(new["data"])
    old_data = old.get("data") if isinstance(old, Mapping) else None
    old_shape = old.get("shape") if isinstance(old, Mapping) else None
    count = len(new_data)
    if not isinstance(old_data, list) or old_shape != new["shape"] or len(old_data) != count:
        return ExpectedChange(case, output, "shape changed", None, count, count)
    differing = sum(1 for a, b in zip(old_data, new_data) if not _same_value(a, b))
    if not differing:
        return ExpectedChange(
            case, output, "unchanged", 0.0 if _numeric(new_data) else None, 0, count
        )
    if not (_numeric(old_data) and _numeric(new_data)):
        return ExpectedChange(case, output, "changed", None, differing, count)
    before = np.asarray(old_data, dtype=np.float64)
    after = np.asarray(new_data, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        deltas = np.abs(before - after)
    nan_moved = np.isnan(deltas) & ~(np.isnan(before) & np.isnan(after))
    deltas = np.where(np.isnan(deltas), np.where(nan_moved, np.inf, 0.0), deltas)
    atol = float(new.get("atol", DEFAULT_ATOL))
    rtol = float(new.get("rtol", DEFAULT_RTOL))
    # "within tolerance": the old values would still have passed against the new ones
    within = bool((deltas <= atol + rtol * np.abs(after)).all()) and new.get("datatype") in (
        "FP16",
        "FP32",
        "FP64",
    )
    status = "within tolerance" if within else "changed"
    return ExpectedChange(case, output, status, float(deltas.max()), differing, count)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _same_value(a: Any, b: Any) -> bool:
    if _numeric([a, b]):
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    return type(a) is type(b) and bool(a == b)
