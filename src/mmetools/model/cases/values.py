"""The fixture format's values: KServe datatypes, tensors, expected outputs, cases and their
results, and the ensemble signature cases are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.model.config import ModelConfig, dtype_name

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

TOP_LEVEL_KEYS = ("description", "inputs", "expected")
INPUT_KEYS = ("datatype", "shape", "data", "files")
EXPECTED_KEYS = ("datatype", "shape", "data", "atol", "rtol")


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
