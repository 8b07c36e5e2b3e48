"""Writing fixture files: expected values updated from a run, formatted stably (keys in a fixed
order, short lists on one line) and written atomically.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.core.atomic import KEEP_MODE, write_text_atomically
from mmetools.core.errors import FixtureError
from mmetools.model.cases.compare import as_bytes, float_text
from mmetools.model.cases.values import (
    FLOAT_DATATYPES,
    TOP_LEVEL_KEYS,
    datatype_of_array,
    numpy_dtype,
)

logger = logging.getLogger(__name__)


def json_values(array: npt.NDArray[Any], datatype: str) -> list[Any]:
    """Flat JSON-ready list of an array's values; floats keep the shortest repr at their own
    precision (0.973 for a float32 0.973, not 0.9729999899864197)."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        values: list[Any] = []
        for index, item in enumerate(flat):
            raw = as_bytes(item)
            try:
                values.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise FixtureError(
                    f"element {index} is not UTF-8 text ({raw[:20]!r}...); "
                    "BYTES fixture data must be text"
                ) from e
        return values
    if datatype in FLOAT_DATATYPES:
        return [float(float_text(v)) for v in flat.astype(numpy_dtype(datatype))]
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
    write_text_atomically(path, text, KEEP_MODE)
    logger.debug("wrote %s", path)


_TENSOR_KEY_ORDER = ("datatype", "shape", "data", "files", "atol", "rtol")


def _ordered(document: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level and tensor keys in a fixed order; tensor names keep the user's order."""

    def by_order(entry: Mapping[str, Any], order: Sequence[str]) -> list[str]:
        return [k for k in order if k in entry] + sorted(k for k in entry if k not in order)

    result: dict[str, Any] = {}
    for key in by_order(document, TOP_LEVEL_KEYS):
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
