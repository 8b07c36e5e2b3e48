"""Plans from a given live state (no AWS): what is refused, what a change of autoscaling alone
calls, and that only this endpoint's own content-hashed names are ever deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmetools.core.errors import DeployError
from mmetools.deploy.declaration import load_declaration
from mmetools.deploy.desired import DesiredState, desired_state
from mmetools.deploy.plan import LiveState, make_plan
from support.deploy.declarations import STAGING, write_repo


def _state(tmp_path: Path, text: str = STAGING) -> DesiredState:
    return desired_state(load_declaration(write_repo(tmp_path, text), "staging", "us-east-1"))


def _live(state: DesiredState, status: str = "InService", **changes: Any) -> LiveState:
    config = {**state.config_request, **changes.pop("config", {})}
    target = {**(state.scalable_target or {}), **changes.pop("target", {})}
    return LiveState(
        endpoint={"EndpointConfigName": config["EndpointConfigName"], "EndpointStatus": status,
                  "FailureReason": "boom"},
        config=config, model=state.model_request, desired_model=state.model_request,
        desired_config=state.config_request if config == state.config_request else None,
        scalable_target=target, policy=state.policy,
    )  # fmt: skip


def test_an_endpoint_that_matches_plans_nothing(tmp_path: Path) -> None:
    state = _state(tmp_path)
    plan = make_plan(state, _live(state))
    assert (plan.calls, plan.replaced, plan.differences, plan.changes) == ((), (), (), False)


@pytest.mark.parametrize("status", ["Creating", "Updating", "RollingBack"])
def test_an_endpoint_in_motion_is_refused(tmp_path: Path, status: str) -> None:
    state = _state(tmp_path)
    with pytest.raises(DeployError, match=f"acme-staging is {status}: wait until it settles"):
        make_plan(state, _live(state, status))


def test_a_failed_endpoint_with_the_declared_config_is_refused(tmp_path: Path) -> None:
    state = _state(tmp_path)
    with pytest.raises(DeployError, match="is Failed with the declared config .* \\(boom\\)"):
        make_plan(state, _live(state, "Failed"))


def test_new_limits_re_register_the_target_and_touch_nothing_else(tmp_path: Path) -> None:
    state = _state(tmp_path, STAGING.replace("max_instances = 2", "max_instances = 4"))
    plan = make_plan(state, _live(state, target={"MaxCapacity": 2}))
    assert [c.operation for c in plan.calls] == ["register_scalable_target"]
    assert plan.differences == ("scalable target: 1..2 -> 1..4",)
    assert not plan.wait


def test_only_this_endpoints_own_names_are_deleted_after_an_update(tmp_path: Path) -> None:
    state = _state(tmp_path)
    foreign = {"EndpointConfigName": "hand-made-config",
               "ProductionVariants": [{**state.config_request["ProductionVariants"][0],
                                       "ModelName": "hand-made-model"}]}  # fmt: skip
    plan = make_plan(state, _live(state, config=foreign))
    assert "update_endpoint" in [c.operation for c in plan.calls]
    assert plan.replaced == ()  # made by someone else: left alone
    owned = {"EndpointConfigName": "acme-staging-c-0123456789",
             "ProductionVariants": [{**state.config_request["ProductionVariants"][0],
                                     "ModelName": "acme-staging-m-0123456789"}]}  # fmt: skip
    plan = make_plan(state, _live(state, config=owned))
    assert [(c.operation, next(iter(c.params.values()))) for c in plan.replaced] == [
        ("delete_endpoint_config", "acme-staging-c-0123456789"),
        ("delete_model", "acme-staging-m-0123456789"),
    ]


def test_leftovers_are_this_endpoints_unused_names_configs_first(tmp_path: Path) -> None:
    state = _state(tmp_path)
    live = _live(state)
    found = LiveState(
        **{**live.__dict__,
           "own_models": (state.model_name, "acme-staging-m-00000000aa"),
           "own_configs": (state.config_name, "acme-staging-c-00000000bb", "acme-staging-c-XYZ")},
    )  # fmt: skip
    plan = make_plan(state, found)
    assert [(c.operation, next(iter(c.params.values()))) for c in plan.leftovers] == [
        ("delete_endpoint_config", "acme-staging-c-00000000bb"),
        ("delete_model", "acme-staging-m-00000000aa"),
    ]
    assert plan.calls == () and plan.changes
    assert "leftover model acme-staging-m-00000000aa of an earlier apply: nothing uses it" in (
        plan.differences
    )
