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
    # Between a batching and a non-batching model, Triton passes the full shape (batch
    # dimension included), so that is what must agree. Triton's load check also accepts equal
    # dims without the batch dimension there, which then fails on the first request.
    if producer.batching == consumer.batching:
        return not _dims_compatible(producer.dims, consumer.dims)
    full_producer = ((WILDCARD_DIM,) if producer.batching else ()) + producer.dims
    full_consumer = ((WILDCARD_DIM,) if consumer.batching else ()) + consumer.dims
    return not _dims_compatible(full_producer, full_consumer)


def _dims_compatible(left: Sequence[int], right: Sequence[int]) -> bool:
    """CompareDimsWithWildcard (triton common): equal rank, equal dims unless either is -1."""
    return len(left) == len(right) and all(
        a == b or a == WILDCARD_DIM or b == WILDCARD_DIM for a, b in zip(left, right)
    )
