"""Loading fixture files: every case parsed and checked against the ensemble's inputs and
outputs (names, datatypes, shapes), each problem naming the file and the field.
"""

from __future__ import annotations

import json
import stat
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.core.jsontext import JsonTooComplex, parse_json
from mmetools.core.errors import ConfigError, FixtureError
from mmetools.model.folder import ModelFolder
from mmetools.model.cases.values import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    EnsembleSignature,
    Expected,
    FIXTURE_SUFFIX,
    FLOAT_DATATYPES,
    FixtureCase,
    KSERVE_DTYPES,
    TensorData,
    TensorSpec,
    EXPECTED_KEYS,
    INPUT_KEYS,
    TOP_LEVEL_KEYS,
    numpy_dtype,
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
        document = parse_json(text)
    except json.JSONDecodeError as e:
        raise FixtureError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    except JsonTooComplex as e:
        raise FixtureError(f"{path}: refused JSON: {e}") from e
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
    _check_keys(document, TOP_LEVEL_KEYS, where, "fixture")
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

    unknown = sorted(set(raw_expected) - set(signature.outputs))
    if unknown:
        raise FixtureError(
            f"{where}: expected outputs {_names(unknown)} are not produced by ensemble "
            f"'{signature.model}' (its outputs: {_names(signature.outputs)})"
        )
    if not raw_expected:
        raise FixtureError(f"{where}: 'expected' is empty; list at least one output")

    inputs = _parse_inputs(path, where, raw_inputs, signature)
    if not check_expected:
        return FixtureCase(path.stem, path, description, inputs, ())
    expected = tuple(
        _parse_expected(where, name, raw_expected[name], signature) for name in raw_expected
    )
    return FixtureCase(path.stem, path, description, inputs, expected)


def parse_input_case(
    document: Mapping[str, Any],
    path: Path,
    name: str,
    signature: EnsembleSignature,
    model_name: str,
) -> FixtureCase:
    """An input-only case (a dataset entry: ``{"description"?, "inputs"}``); ``files`` of BYTES
    inputs are relative to ``path``'s folder. The case has no expected outputs."""
    where = f"{path}: model '{model_name}'"
    _check_keys(document, ("description", "inputs"), where, "dataset case")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise FixtureError(f"{where}: 'description' must be a string")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, dict):
        raise FixtureError(f"{where}: 'inputs' must be an object of tensor name -> tensor")
    return FixtureCase(
        name, path, description, _parse_inputs(path, where, raw_inputs, signature), ()
    )


def _parse_inputs(
    path: Path, where: str, raw_inputs: Mapping[str, Any], signature: EnsembleSignature
) -> tuple[TensorData, ...]:
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
    inputs = tuple(
        _parse_input(path, where, name, raw_inputs[name], signature) for name in signature.inputs
    )
    batch_sizes = {t.shape[0] for t in inputs} if signature.max_batch_size > 0 else set()
    if len(batch_sizes) > 1:
        raise FixtureError(
            f"{where}: inputs disagree on the batch size (first dimension): "
            + ", ".join(f"{t.name} {t.shape[0]}" for t in inputs)
        )
    return inputs


def _parse_input(
    path: Path, where: str, name: str, raw: Any, signature: EnsembleSignature
) -> TensorData:
    field = f"inputs.{name}"
    spec = signature.inputs[name]
    datatype, shape = _parse_header(where, field, raw, INPUT_KEYS, spec, signature)
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
                contents.append(_read_input_file(file_path, f"{where}: {field}.files[{index}]"))
            except OSError as e:
                raise FixtureError(
                    f"{where}: {field}.files[{index}]: cannot read {file_path}: "
                    f"{e.strerror or e}"
                ) from e
        array = _object_array(contents, shape)
    else:
        array = _parse_data(where, field, raw["data"], datatype, shape)
    return TensorData(name, datatype, shape, array)


MAX_INPUT_FILE_BYTES = 1024**3  # one request tensor element; Triton's default limit is 2 GiB


def _read_input_file(path: Path, where: str) -> bytes:
    """A regular file's bytes, at most MAX_INPUT_FILE_BYTES: a FIFO would hang the read and a
    device such as /dev/zero would never end."""
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise FixtureError(f"{where}: {path} is not a regular file")
    with path.open("rb") as stream:
        data = stream.read(MAX_INPUT_FILE_BYTES + 1)
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise FixtureError(f"{where}: {path} is larger than {MAX_INPUT_FILE_BYTES} bytes")
    return data


def _parse_expected(where: str, name: str, raw: Any, signature: EnsembleSignature) -> Expected:
    field = f"expected.{name}"
    spec = signature.outputs[name]
    datatype, shape = _parse_header(where, field, raw, EXPECTED_KEYS, spec, signature)
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
    if not isinstance(datatype, str) or datatype not in KSERVE_DTYPES:
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
        encoded: list[bytes] = []
        for index, value in enumerate(data):
            try:
                encoded.append(str(value).encode("utf-8"))
            except UnicodeEncodeError as e:
                raise FixtureError(
                    f"{where}: {field}.data[{index}]: not valid Unicode text "
                    f"({value[e.start:e.end]!r} is a lone surrogate)"
                ) from e
        return _object_array(encoded, shape)
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
