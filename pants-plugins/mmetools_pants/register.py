"""Registers the mmetools_pants backend: the `triton_model` target and its rules (wiring only).

The rules live by concern: `subsystem` ([mmetools] options), `tool` (the mmetools environment and
its content key), `processes` (how a hermetic model process is made), `inputs` (sources, weights,
packed env), `test`, `package`, `publish` and `check` (the goals), `tailor`.
"""

from __future__ import annotations

from pants.engine.target import Target

from mmetools_pants import check, family, inputs, package, publish, tailor, test, tool
from mmetools_pants.target_types import TritonModelFamilyTarget, TritonModelTarget


def target_types() -> list[type[Target]]:
    return [TritonModelTarget, TritonModelFamilyTarget]


def model_rules() -> tuple[object, ...]:
    """The rules of the triton_model goals: test, package, publish and check."""
    return (
        *tool.rules(),
        *family.rules(),
        *inputs.rules(),
        *test.rules(),
        *package.rules(),
        *publish.rules(),
        *check.rules(),
    )


def rules() -> tuple[object, ...]:
    return (*model_rules(), *tailor.rules())
