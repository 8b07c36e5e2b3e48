"""Registers the mmetools_pants backend: the `triton_model` target and its rules (wiring only)."""

from __future__ import annotations

from pants.engine.target import Target

from mmetools_pants import rules as model_rules
from mmetools_pants import tailor
from mmetools_pants.target_types import TritonModelTarget


def target_types() -> list[type[Target]]:
    return [TritonModelTarget]


def rules() -> tuple[object, ...]:
    return (*model_rules.rules(), *tailor.rules())
