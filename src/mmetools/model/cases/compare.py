"""Comparing a case's outputs with its expected values: floats within atol + rtol*|e| (NaN equals
NaN), ints and BYTES exactly, failures showing the first differing elements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from mmetools.model.cases.values import (
    CaseResult,
    Expected,
    FLOAT_DATATYPES,
    FixtureCase,
    OutputComparison,
    SHOWN_DIFFERENCES,
    datatype_of_array,
)


def compare_case(case: FixtureCase, outputs: Mapping[str, npt.NDArray[Any]]) -> CaseResult:
    """Compare every expected output of ``case`` with ``outputs`` (name -> array)."""
    return CaseResult(case, tuple(compare_output(e, outputs.get(e.name)) for e in case.expected))


def compare_output(expected: Expected, actual: npt.NDArray[Any] | None) -> OutputComparison:
    name = expected.name
    if actual is None:
        return OutputComparison(name, False, None, None, f"{name}: missing from the outputs")
    actual = np.asarray(actual)
    actual_datatype = datatype_of_array(actual)
    if actual_datatype != expected.datatype:
        shown = actual_datatype or str(actual.dtype)
        return OutputComparison(
            name, False, None, None, f"{name}: datatype {shown}, expected {expected.datatype}"
        )
    if tuple(actual.shape) != expected.shape:
        return OutputComparison(
            name,
            False,
            None,
            None,
            f"{name}: shape {list(actual.shape)}, expected {list(expected.shape)}",
        )
    if expected.datatype == "BYTES":
        return _compare_bytes(expected, actual)
    if expected.datatype in FLOAT_DATATYPES:
        return _compare_floats(expected, actual)
    return _compare_exact(expected, actual)


def _compare_floats(expected: Expected, actual: npt.NDArray[Any]) -> OutputComparison:
    want = expected.array.astype(np.float64)
    got = actual.astype(np.float64)
    both_nan = np.isnan(want) & np.isnan(got)
    same = (want == got) | both_nan  # also equal infinities, whose difference is NaN
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.where(same, 0.0, np.abs(got - want))
        abs_error = np.where(np.isnan(abs_error), np.inf, abs_error)
        scale = np.abs(want)
        # relative error where the expected value is not 0 (there only atol applies)
        rel_error = np.divide(abs_error, scale, where=scale > 0, out=np.zeros_like(abs_error))
        # A non-finite expected value (inf, 1e400) matches only itself: rtol * inf = inf.
        within = same | (np.isfinite(want) & (abs_error <= expected.atol + expected.rtol * scale))
    max_abs = float(abs_error.max()) if abs_error.size else 0.0
    max_rel = float(rel_error.max()) if rel_error.size else 0.0
    if bool(within.all()):
        return OutputComparison(expected.name, True, max_abs, max_rel, "")
    rule = f"|actual - expected| <= {expected.atol:g} + {expected.rtol:g} * |expected|"
    message = _differences_message(expected, actual, ~within, f"outside {rule}")
    return OutputComparison(expected.name, False, max_abs, max_rel, message)


def _compare_exact(expected: Expected, actual: npt.NDArray[Any]) -> OutputComparison:
    differs = expected.array != actual
    with np.errstate(over="ignore"):
        abs_error = np.abs(expected.array.astype(np.float64) - actual.astype(np.float64))
    max_abs = float(abs_error.max()) if abs_error.size else 0.0
    if not bool(differs.any()):
        return OutputComparison(expected.name, True, 0.0, None, "")
    message = _differences_message(expected, actual, differs, "differ (exact comparison)")
    return OutputComparison(expected.name, False, max_abs, None, message)


def _compare_bytes(expected: Expected, actual: npt.NDArray[Any]) -> OutputComparison:
    want = [as_bytes(v) for v in expected.array.reshape(-1)]
    got = [as_bytes(v) for v in actual.reshape(-1)]
    differs = np.array([w != g for w, g in zip(want, got)], dtype=bool).reshape(expected.shape)
    if not bool(differs.any()):
        return OutputComparison(expected.name, True, None, None, "")
    message = _differences_message(expected, actual, differs, "differ")
    return OutputComparison(expected.name, False, None, None, message)


def regen_hint(model_path: str) -> str:
    """The last line of a fixture failure: the fix when the new outputs are intended."""
    return (
        f"if the new outputs are intended, update the expected values with "
        f"`mmetools fixtures regen {model_path}` and review the diff before committing"
    )


def _differences_message(
    expected: Expected, actual: npt.NDArray[Any], differs: npt.NDArray[np.bool_], what: str
) -> str:
    positions = np.argwhere(differs)
    total = int(differs.size)
    shown = []
    for position in positions[:SHOWN_DIFFERENCES]:
        index = tuple(int(i) for i in position)
        shown.append(
            f"[{', '.join(str(i) for i in index)}] expected "
            f"{_display(expected.array[index])} got {_display(actual[index])}"
        )
    more = len(positions) - len(shown)
    tail = f"; ... {more} more" if more > 0 else ""
    return f"{expected.name}: {len(positions)} of {total} values {what}: " + "; ".join(shown) + tail


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.bytes_):
        return bytes(value)
    return str(value).encode("utf-8")


def _display(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return repr(bytes(value).decode("utf-8"))
        except UnicodeDecodeError:
            return repr(bytes(value)[:40])
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (np.floating, float)):
        return float_text(value)
    return str(value.item() if isinstance(value, np.generic) else value)


def float_text(value: Any) -> str:
    """Shortest text that reads back as the same value at the value's own precision."""
    if isinstance(value, np.floating) and value.dtype != np.float64:
        return str(value)  # numpy prints float16/float32 with their own shortest repr
    return repr(float(value))
