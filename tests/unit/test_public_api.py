"""The public API: every name in ``mmetools.__all__`` resolves to the object its room defines."""

from __future__ import annotations

import importlib

import pytest

import mmetools


@pytest.mark.parametrize("name", mmetools.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(mmetools, name)
    assert not isinstance(value, type(mmetools)), f"{name} is shadowed by a subpackage"
    assert getattr(value, "__name__", name) in (name, name.removesuffix("_models"))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        getattr(mmetools, "no_such_thing")


def test_importing_a_low_room_does_not_import_the_toolkit() -> None:
    # A fresh interpreter: the lazy facade must not pull pipeline in for core.errors.
    import subprocess
    import sys

    code = "import sys, mmetools.core.errors; print('mmetools.pipeline' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert importlib.import_module("mmetools").__all__ == sorted(mmetools.__all__)


def test_the_deploy_entry_points_are_public() -> None:
    # What a script needs to plan, apply and smoke an endpoint without the CLI (docs/endpoints.md).
    from mmetools.deploy import smoke, stage

    assert {
        "open_stage", "plan_stage", "apply_stage", "live_status", "smoke_endpoint",
        "target_models", "WaitOptions", "SmokeOptions", "load_declaration",
    } <= set(mmetools.__all__)  # fmt: skip
    assert getattr(mmetools, "apply_stage") is stage.apply_stage
    assert getattr(mmetools, "smoke_endpoint") is smoke.smoke_endpoint
