"""Fixture cases of a model: named inputs and expected outputs with per-output tolerances.

One JSON file per case in ``models/<name>/tests/fixtures/<case>.json``::

    {
      "description": "photo of a laptop screen",
      "inputs": {"IMAGE": {"datatype": "BYTES", "shape": [1, 1], "files": ["screen_01.png"]}},
      "expected": {
        "LABEL": {"datatype": "BYTES", "shape": [1, 1], "data": ["screen"]},
        "PROBABILITY": {"datatype": "FP32", "shape": [1, 1], "data": [0.973],
                        "atol": 1e-4, "rtol": 1e-3}
      }
    }

Tensor names are the ensemble's input/output names, datatypes are KServe names (FP32, INT64,
BYTES, ...), shapes include the batch dimension when the ensemble's max_batch_size > 0, ``data``
is the flat row-major list (strings for BYTES). A BYTES input may give ``files`` instead: paths
relative to the fixture file, read as raw bytes. Floats compare with |a-e| <= atol + rtol*|e|
(defaults below); NaN equals NaN; ints and BYTES compare exactly.

Expected values are produced by ``mmetools fixtures regen`` with the in-process reference runner
(:mod:`mmetools.reference`), never by Triton; :func:`update_expected` and :func:`write_fixture`
rewrite a file keeping the user's description, inputs and tolerances.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.errors import ConfigError, FixtureError
from mmetools.model_config import ModelConfig, dtype_name
from mmetools.model_folder import ModelFolder

logger = logging.getLogger(__name__)

FIXTURE_SUFFIX = ".json"
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
# How many differing elements a failure message shows.
SHOWN_DIFFERENCES = 5

# KServe datatype name -> numpy dtype. BF16 has no numpy dtype, so fixtures cannot express it.
KSERVE_DTYPES: dict[str, npt.DTypeLike] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})

_TOP_LEVEL_KEYS = ("description", "inputs", "expected")
_INPUT_KEYS = ("datatype", "shape", "data", "files")
_EXPECTED_KEYS = ("datatype", "shape", "data", "atol", "rtol")


def kserve_datatype(config_dtype: int) -> str:
    """Triton config enum (TYPE_FP32, TYPE_STRING, ...) -> KServe name (FP32, BYTES, ...)."""
    name = dtype_name(config_dtype).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """numpy dtype of a KServe datatype name (object for BYTES)."""
    return np.dtype(KSERVE_DTYPES[datatype])


def datatype_of_array(array: npt.NDArray[Any]) -> str | None:
    """KServe name of an array's dtype; BYTES for object/bytes/str arrays; None if unmappable."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, dtype in KSERVE_DTYPES.items():
        if name != "BYTES" and array.dtype == np.dtype(dtype):
            return name
    return None


@dataclass(frozen=True, eq=False)
class TensorData:
    """One input tensor of a case. BYTES arrays have dtype=object and hold ``bytes``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class Expected:
    """One expected output of a case with the tolerances it is compared with."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: npt.NDArray[Any]
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL


@dataclass(frozen=True, eq=False)
class FixtureCase:
    """A named case: ``name`` is the file name without .json."""

    name: str
    path: Path
    description: str
    inputs: tuple[TensorData, ...]
    expected: tuple[Expected, ...]

    def input_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {tensor.name: tensor.array for tensor in self.inputs}


@dataclass(frozen=True)
class OutputComparison:
    """How one output compared. ``max_rel_error`` is |a-e|/|e| over elements whose expected value
    is not 0. Errors are None for BYTES outputs and when shapes/dtypes differ (``max_rel_error``
    also for ints); ``message`` is empty when the output passed."""

    output: str
    passed: bool
    max_abs_error: float | None
    max_rel_error: float | None
    message: str


@dataclass(frozen=True, eq=False)
class CaseResult:
    """The outcome of one case. ``error`` is set when the case could not run at all."""

    case: FixtureCase
    comparisons: tuple[OutputComparison, ...]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.comparisons)


# --------------------------------------------------------------------------------------------
# Loading and validation


@dataclass(frozen=True)
class TensorSpec:
    """What the ensemble config declares for one of its inputs or outputs."""

    datatype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class EnsembleSignature:
    """The ensemble's inputs and outputs as fixtures see them."""

    model: str
    max_batch_size: int
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    @classmethod
    def from_config(cls, config: ModelConfig) -> EnsembleSignature:
        return cls(
            model=str(config.name),
            max_batch_size=int(config.max_batch_size),
            inputs={
                t.name: TensorSpec(kserve_datatype(t.data_type), tuple(int(d) for d in t.dims))
                for t in config.input
            },
            outputs={
                t.name: TensorSpec(kserve_datatype(t.data_type), tuple(int(d) for d in t.dims))
                for t in config.output
            },
        )


def fixture_paths(model: ModelFolder) -> list[Path]:
    """The model's fixture files, sorted by name (empty when there is no fixtures folder)."""
    if not model.fixtures_dir.is_dir():
        return []
    return sorted(
        p for p in model.fixtures_dir.iterdir() if p.suffix == FIXTURE_SUFFIX and p.is_file()
    )


def load_fixtures(model: ModelFolder) -> list[FixtureCase]:
    """Every case in ``models/<name>/tests/fixtures/*.json``, sorted by name, checked against the
    model's ensemble (names, datatypes, shapes). FixtureError names the file, model and field."""
    try:
        ensemble = model.ensemble()
    except ConfigError as e:
        raise FixtureError(
            f"{model.path}: cannot check fixtures of model '{model.name}': {e}"
        ) from e
    signature = EnsembleSignature.from_config(ensemble.config)
    paths = fixture_paths(model)
    if not paths:
        raise FixtureError(
            f"{model.fixtures_dir}: model '{model.name}' has no fixture cases (*.json)"
        )
    return [load_case(path, signature, model.name) for path in paths]


def read_fixture_document(path: Path) -> dict[str, Any]:
    """The raw JSON object of a fixture file; FixtureError with line:column on bad JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise FixtureError(f"{path}: file not found") from e
    except UnicodeDecodeError as e:
        raise FixtureError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise FixtureError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    if not isinstance(document, dict):
        raise FixtureError(f"{path}: a fixture must be a JSON object, got {_json_kind(document)}")
    return document


def load_case(path: Path, signature: EnsembleSignature, model_name: str) -> FixtureCase:
    """Parse and check one fixture file against an ensemble signature."""
    return parse_case(read_fixture_document(path), path, signature, model_name)


def parse_case(
    document: Mapping[str, Any],
    path: Path,
    signature: EnsembleSignature,
    model_name: str,
    *,
    check_expected: bool = True,
) -> FixtureCase:
    """Check a fixture document (as read from ``path``). With ``check_expected=False`` only the
    names of the expected outputs are checked and ``expected`` is empty: what regeneration needs
    when the stored values no longer fit."""
    where = f"{path}: model '{model_name}'"
    _check_keys(document, _TOP_LEVEL_KEYS, where, "fixture")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise FixtureError(f"{where}: 'description' must be a string")
    for key in ("inputs", "expected"):
        if key not in document:
            raise FixtureError(f"{where}: missing '{key}'")
        if not isinstance(document[key], dict):
            raise FixtureError(f"{where}: '{key}' must be an object of tensor name -> tensor")
    raw_inputs: dict[str, Any] = document["inputs"]
    raw_expected: dict[str, Any] = document["expected"]

    unknown = sorted(set(raw_inputs) - set(signature.inputs))
    if unknown:
        raise FixtureError(
            f"{where}: inputs {_names(unknown)} are not inputs of ensemble "
            f"'{signature.model}' (its inputs: {_names(signature.inputs)})"
        )
    missing = [name for name in signature.inputs if name not in raw_inputs]
    if missing:
        raise FixtureError(
            f"{where}: ensemble '{signature.model}' input{'s' if len(missing) > 1 else ''} "
            f"{_names(missing)} missing from 'inputs'"
        )
    unknown = sorted(set(raw_expected) - set(signature.outputs))
    if unknown:
        raise FixtureError(
            f"{where}: expected outputs {_names(unknown)} are not produced by ensemble "
            f"'{signature.model}' (its outputs: {_names(signature.outputs)})"
        )
    if not raw_expected:
        raise FixtureError(f"{where}: 'expected' is empty; list at least one output")

    inputs = tuple(
        _parse_input(path, where, name, raw_inputs[name], signature) for name in signature.inputs
    )
    batch_sizes = {t.shape[0] for t in inputs} if signature.max_batch_size > 0 else set()
    if len(batch_sizes) > 1:
        raise FixtureError(
            f"{where}: inputs disagree on the batch size (first dimension): "
            + ", ".join(f"{t.name} {t.shape[0]}" for t in inputs)
        )
    if not check_expected:
        return FixtureCase(path.stem, path, description, inputs, ())
    expected = tuple(
        _parse_expected(where, name, raw_expected[name], signature) for name in raw_expected
    )
    return FixtureCase(path.stem, path, description, inputs, expected)


def _parse_input(
    path: Path, where: str, name: str, raw: Any, signature: EnsembleSignature
) -> TensorData:
    field = f"inputs.{name}"
    spec = signature.inputs[name]
    datatype, shape = _parse_header(where, field, raw, _INPUT_KEYS, spec, signature)
    has_data, has_files = "data" in raw, "files" in raw
    if has_data == has_files:
        raise FixtureError(f"{where}: {field}: give exactly one of 'data' or 'files'")
    count = math.prod(shape)
    if has_files:
        if datatype != "BYTES":
            raise FixtureError(f"{where}: {field}.files is only allowed for BYTES inputs")
        files = raw["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise FixtureError(f"{where}: {field}.files must be a list of file paths")
        if len(files) != count:
            raise FixtureError(
                f"{where}: {field}.files has {len(files)} entries but shape "
                f"{list(shape)} needs {count}"
            )
        contents: list[bytes] = []
        for index, relative in enumerate(files):
            file_path = path.parent / relative
            try:
                contents.append(file_path.read_bytes())
            except OSError as e:
                raise FixtureError(
                    f"{where}: {field}.files[{index}]: cannot read {file_path}: "
                    f"{e.strerror or e}"
                ) from e
        array = _object_array(contents, shape)
    else:
        array = _parse_data(where, field, raw["data"], datatype, shape)
    return TensorData(name, datatype, shape, array)


def _parse_expected(where: str, name: str, raw: Any, signature: EnsembleSignature) -> Expected:
    field = f"expected.{name}"
    spec = signature.outputs[name]
    datatype, shape = _parse_header(where, field, raw, _EXPECTED_KEYS, spec, signature)
    if "data" not in raw:
        raise FixtureError(f"{where}: {field}: missing 'data'")
    array = _parse_data(where, field, raw["data"], datatype, shape)
    tolerances: dict[str, float] = {"atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL}
    for key in tolerances:
        if key not in raw:
            continue
        if datatype not in FLOAT_DATATYPES:
            raise FixtureError(
                f"{where}: {field}.{key}: tolerances apply to float outputs only; "
                f"{datatype} compares exactly"
            )
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise FixtureError(f"{where}: {field}.{key} must be a number, got {value!r}")
        if value < 0:
            raise FixtureError(f"{where}: {field}.{key} must not be negative, got {value!r}")
        tolerances[key] = float(value)
    return Expected(name, datatype, shape, array, tolerances["atol"], tolerances["rtol"])


def _parse_header(
    where: str,
    field: str,
    raw: Any,
    allowed: Sequence[str],
    spec: TensorSpec,
    signature: EnsembleSignature,
) -> tuple[str, tuple[int, ...]]:
    if not isinstance(raw, dict):
        raise FixtureError(f"{where}: {field} must be an object with datatype, shape and data")
    _check_keys(raw, allowed, where, field)
    for key in ("datatype", "shape"):
        if key not in raw:
            raise FixtureError(f"{where}: {field}: missing '{key}'")
    datatype = raw["datatype"]
    if datatype not in KSERVE_DTYPES:
        raise FixtureError(
            f"{where}: {field}.datatype {datatype!r} is not one of {', '.join(KSERVE_DTYPES)}"
        )
    if datatype != spec.datatype:
        raise FixtureError(
            f"{where}: {field}.datatype is {datatype} but ensemble '{signature.model}' declares "
            f"{spec.datatype} (TYPE_{'STRING' if spec.datatype == 'BYTES' else spec.datatype})"
        )
    shape_value = raw["shape"]
    if not isinstance(shape_value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape_value
    ):
        raise FixtureError(
            f"{where}: {field}.shape must be a list of non-negative integers, got {shape_value!r}"
        )
    shape = tuple(shape_value)
    _check_shape(where, field, shape, spec.dims, signature.max_batch_size)
    return datatype, shape


def _check_shape(
    where: str, field: str, shape: tuple[int, ...], dims: tuple[int, ...], max_batch_size: int
) -> None:
    batched = max_batch_size > 0
    declared = ["batch", *(str(d) for d in dims)] if batched else [str(d) for d in dims]
    described = f"[{', '.join(declared)}]"
    if batched:
        note = f" (batch dimension first, max_batch_size {max_batch_size})"
    else:
        note = " (max_batch_size 0: no batch dimension)"
    expected_rank = len(dims) + (1 if batched else 0)
    if len(shape) != expected_rank:
        raise FixtureError(
            f"{where}: {field}.shape {list(shape)} does not match dims {described}{note}"
        )
    if batched:
        batch = shape[0]
        if not 1 <= batch <= max_batch_size:
            raise FixtureError(
                f"{where}: {field}.shape {list(shape)}: batch size {batch} must be between 1 "
                f"and max_batch_size {max_batch_size}"
            )
    for actual, declared_dim in zip(shape[1:] if batched else shape, dims):
        if declared_dim != -1 and actual != declared_dim:
            raise FixtureError(
                f"{where}: {field}.shape {list(shape)} does not match dims {described}{note}"
            )


def _parse_data(
    where: str, field: str, data: Any, datatype: str, shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    if not isinstance(data, list):
        raise FixtureError(f"{where}: {field}.data must be a flat list, got {_json_kind(data)}")
    count = math.prod(shape)
    if len(data) != count:
        raise FixtureError(
            f"{where}: {field}.data has {len(data)} values but shape {list(shape)} needs {count}"
        )
    for index, value in enumerate(data):
        if not _value_fits(value, datatype):
            raise FixtureError(
                f"{where}: {field}.data[{index}] = {json.dumps(value)} is not a {datatype} value"
            )
    if datatype == "BYTES":
        return _object_array([str(v).encode("utf-8") for v in data], shape)
    try:
        return np.array(data, dtype=numpy_dtype(datatype)).reshape(shape)
    except OverflowError as e:
        raise FixtureError(f"{where}: {field}.data: value out of range for {datatype}") from e


def _value_fits(value: Any, datatype: str) -> bool:
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype in FLOAT_DATATYPES:
        return isinstance(value, (int, float))
    if not isinstance(value, int):
        return False
    info = np.iinfo(numpy_dtype(datatype))
    return int(info.min) <= value <= int(info.max)


def _object_array(values: Sequence[bytes], shape: tuple[int, ...]) -> npt.NDArray[Any]:
    # np.array(list of bytes, dtype=object) keeps every element a distinct Python bytes.
    array = np.empty(len(values), dtype=np.object_)
    array[:] = list(values)
    return array.reshape(shape)


def _check_keys(raw: Mapping[str, Any], allowed: Sequence[str], where: str, field: str) -> None:
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise FixtureError(
            f"{where}: {field}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{_names(unknown)} (allowed: {', '.join(allowed)})"
        )


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"{value!r}"


# --------------------------------------------------------------------------------------------
# Comparison


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
        within = same | (abs_error <= expected.atol + expected.rtol * scale)
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
    want = [_as_bytes(v) for v in expected.array.reshape(-1)]
    got = [_as_bytes(v) for v in actual.reshape(-1)]
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


def _as_bytes(value: Any) -> bytes:
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
        return _float_text(value)
    return str(value.item() if isinstance(value, np.generic) else value)


def _float_text(value: Any) -> str:
    """Shortest text that reads back as the same value at the value's own precision."""
    if isinstance(value, np.floating) and value.dtype != np.float64:
        return str(value)  # numpy prints float16/float32 with their own shortest repr
    return repr(float(value))


# --------------------------------------------------------------------------------------------
# Writing


def json_values(array: npt.NDArray[Any], datatype: str) -> list[Any]:
    """Flat JSON-ready list of an array's values; floats keep the shortest repr at their own
    precision (0.973 for a float32 0.973, not 0.9729999899864197)."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        values: list[Any] = []
        for index, item in enumerate(flat):
            raw = _as_bytes(item)
            try:
                values.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise FixtureError(
                    f"element {index} is not UTF-8 text ({raw[:20]!r}...); "
                    "BYTES fixture data must be text"
                ) from e
        return values
    if datatype in FLOAT_DATATYPES:
        return [float(_float_text(v)) for v in flat.astype(numpy_dtype(datatype))]
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    return [int(v) for v in flat]


def update_expected(
    document: Mapping[str, Any], outputs: Mapping[str, npt.NDArray[Any]]
) -> dict[str, Any]:
    """A copy of a raw fixture document whose expected ``data`` and ``shape`` come from
    ``outputs``; datatypes, tolerances, description and inputs are kept as they are.
    Only outputs the document already lists are updated."""
    updated: dict[str, Any] = json.loads(json.dumps(document))  # deep copy of plain JSON
    for name, entry in updated.get("expected", {}).items():
        if name not in outputs:
            raise FixtureError(f"expected output '{name}' was not produced")
        array = np.asarray(outputs[name])
        datatype = entry.get("datatype") or datatype_of_array(array)
        entry["shape"] = [int(d) for d in array.shape]
        entry["data"] = json_values(array, str(datatype))
    return updated


def format_fixture(document: Mapping[str, Any]) -> str:
    """Stable text of a fixture: 2-space indent, keys in a fixed order, scalar lists on one line
    (wrapped at 100 columns), floats as their shortest repr."""
    return _format_value(_ordered(document), 0) + "\n"


def write_fixture(path: Path, document: Mapping[str, Any]) -> None:
    """Write a fixture file atomically (temp file in the same folder, then os.replace)."""
    text = format_fixture(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o777)
        else:
            os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    logger.debug("wrote %s", path)


_TENSOR_KEY_ORDER = ("datatype", "shape", "data", "files", "atol", "rtol")


def _ordered(document: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level and tensor keys in a fixed order; tensor names keep the user's order."""

    def by_order(entry: Mapping[str, Any], order: Sequence[str]) -> list[str]:
        return [k for k in order if k in entry] + sorted(k for k in entry if k not in order)

    result: dict[str, Any] = {}
    for key in by_order(document, _TOP_LEVEL_KEYS):
        section = document[key]
        if key in ("inputs", "expected") and isinstance(section, Mapping):
            result[key] = {
                name: (
                    {k: tensor[k] for k in by_order(tensor, _TENSOR_KEY_ORDER)}
                    if isinstance(tensor, Mapping)
                    else tensor
                )
                for name, tensor in section.items()
            }
        else:
            result[key] = section
    return result


_WIDTH = 100


def _format_value(value: Any, indent: int, used: int = 0) -> str:
    """``used``: columns already taken on the first line (indent and key)."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = []
        for key, item in value.items():
            prefix = f"{inner}{json.dumps(str(key), ensure_ascii=False)}: "
            items.append(prefix + _format_value(item, indent + 1, len(prefix)))
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if any(isinstance(v, (Mapping, list)) for v in value):
            items = [f"{inner}{_format_value(v, indent + 1, len(inner))}" for v in value]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        scalars = [_format_scalar(v) for v in value]
        one_line = "[" + ", ".join(scalars) + "]"
        if used + len(one_line) + 1 <= _WIDTH:  # +1: a trailing comma
            return one_line
        lines: list[str] = []
        current = ""
        for text in scalars:
            candidate = f"{current}, {text}" if current else text
            if current and len(inner) + len(candidate) + 1 > _WIDTH:
                lines.append(current + ",")
                current = text
            else:
                current = candidate
        lines.append(current)
        return "[\n" + "\n".join(inner + line for line in lines) + "\n" + pad + "]"
    return _format_scalar(value)


def _format_scalar(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return json.dumps(value, ensure_ascii=False)
