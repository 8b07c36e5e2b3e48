"""Tensors as two sides of an ensemble mapping declare them, and when their shapes agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WILDCARD_DIM = -1


@dataclass(frozen=True)
class Tensor:
    """The data type and shape one side of a mapping declares for an ensemble tensor."""

    data_type: int
    dims: tuple[int, ...]
    batching: bool
    origin: str  # "ensemble input 'X'", "output 'Y' of step 1 (pre)", ...

    @classmethod
    def declared(cls, io: Any, batching: bool, origin: str, use_reshape: bool) -> Tensor:
        # Ensemble inputs/outputs count with their reshape, step tensors with their dims
        # (ValidateEnsembleConfig / ValidateTensorMapping).
        dims = io.reshape.shape if use_reshape and io.HasField("reshape") else io.dims
        return cls(int(io.data_type), tuple(int(d) for d in dims), batching, origin)

    def shape(self, with_batch: bool) -> str:
        parts = (["batch"] if with_batch and self.batching else []) + [str(d) for d in self.dims]
        return "[" + ",".join(parts) + "]"


def shape_mismatch(producer: Tensor, consumer: Tensor) -> bool:
    """ValidateTensorConsistency: the dims must agree without the batch dimension or with it
    (a non-batching model's [-1,4] meets a batching model's [4]); Triton refuses otherwise."""
    return not _dims_compatible(producer.dims, consumer.dims) and not _dims_compatible(
        _full_dims(producer), _full_dims(consumer)
    )


def needs_batch_one(producer: Tensor, consumer: Tensor) -> bool:
    """A batching and a non-batching side that agree only without the batch dimension: Triton
    loads it, and the ensemble scheduler reshapes the tensor only when the batch is 1."""
    return (
        producer.batching != consumer.batching
        and _dims_compatible(producer.dims, consumer.dims)
        and not _dims_compatible(_full_dims(producer), _full_dims(consumer))
    )


def _full_dims(tensor: Tensor) -> tuple[int, ...]:
    return ((WILDCARD_DIM,) if tensor.batching else ()) + tensor.dims


def _dims_compatible(left: Sequence[int], right: Sequence[int]) -> bool:
    """CompareDimsWithWildcard (triton common): equal rank, equal dims unless either is -1."""
    return len(left) == len(right) and all(
        a == b or a == WILDCARD_DIM or b == WILDCARD_DIM for a, b in zip(left, right)
    )
