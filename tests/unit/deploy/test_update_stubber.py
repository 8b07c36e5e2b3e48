"""What moto does not implement, through botocore's Stubber (every request and response checked
against the service model): UpdateEndpoint with a blue/green DeploymentConfig when the instance
type changes, with autoscaling deregistered around it (AWS refuses the update otherwise) and put
back when the update fails."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from mmetools.core.errors import DeployError
from mmetools.deploy.apply import WaitOptions, apply_plan
from mmetools.deploy.declaration import load_declaration
from mmetools.deploy.desired import SCALABLE_DIMENSION, DesiredState, desired_state
from mmetools.deploy.plan import Clients, make_plan, read_live
from support.deploy.declarations import STAGING, write_repo

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/acme-staging"
RESOURCE = "endpoint/acme-staging/variant/AllTraffic"


@pytest.fixture
def stubbed() -> Iterator[tuple[Clients, Stubber, Stubber]]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    clients = Clients(session.client("sagemaker"), session.client("application-autoscaling"))
    with Stubber(clients.sagemaker) as sagemaker, Stubber(clients.autoscaling) as autoscaling:
        yield clients, sagemaker, autoscaling
        sagemaker.assert_no_pending_responses()
        autoscaling.assert_no_pending_responses()


def _states(tmp_path: Path) -> tuple[DesiredState, DesiredState]:
    old = desired_state(
        load_declaration(write_repo(tmp_path / "old", STAGING), "staging", "us-east-1")
    )
    bigger = STAGING.replace("ml.g4dn.xlarge", "ml.g5.2xlarge").replace(
        "[endpoints.staging]\n", "[endpoints.staging]\nblue_green_wait_s = 300\n"
    )
    new = desired_state(
        load_declaration(write_repo(tmp_path / "new", bigger), "staging", "us-east-1")
    )
    return old, new


def _endpoint(config: str, status: str) -> dict[str, Any]:
    return {
        "EndpointName": "acme-staging", "EndpointArn": ARN,
        "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }  # fmt: skip


def _live_reads(old: DesiredState, new: DesiredState, sagemaker: Stubber, scaling: Stubber) -> None:
    sagemaker.add_response("describe_endpoint", _endpoint(old.config_name, "InService"),
                           {"EndpointName": "acme-staging"})  # fmt: skip
    sagemaker.add_response(
        "describe_endpoint_config",
        {**old.config_request, "EndpointConfigArn": ARN,
         "CreationTime": NOW},
        {"EndpointConfigName": old.config_name},
    )  # fmt: skip
    sagemaker.add_response(
        "describe_model",
        {**old.model_request, "ModelArn": ARN,
         "CreationTime": NOW},
        {"ModelName": old.model_name},
    )  # fmt: skip
    sagemaker.add_client_error(
        "describe_endpoint_config", "ValidationException",
        f"Could not find endpoint configuration \"{new.config_name}\".",
        expected_params={"EndpointConfigName": new.config_name},
    )  # fmt: skip
    assert old.scalable_target is not None and old.policy is not None
    scaling.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": [{**old.scalable_target, "RoleARN": "arn:aws:iam::1:role/x",
                              "CreationTime": NOW}]},
        {"ServiceNamespace": "sagemaker", "ResourceIds": [RESOURCE],
         "ScalableDimension": SCALABLE_DIMENSION},
    )  # fmt: skip
    scaling.add_response(
        "describe_scaling_policies",
        {"ScalingPolicies": [{**old.policy, "PolicyARN": ARN,
                              "CreationTime": NOW}]},
        {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
         "ScalableDimension": SCALABLE_DIMENSION},
    )  # fmt: skip
    # This endpoint's own names: only the ones in use, so no leftover to delete.
    sagemaker.add_response(
        "list_models",
        {"Models": [{"ModelName": old.model_name, "ModelArn": ARN, "CreationTime": NOW}]},
        {"NameContains": "acme-staging-"},
    )
    sagemaker.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [{"EndpointConfigName": old.config_name, "EndpointConfigArn": ARN,
                              "CreationTime": NOW}]},
        {"NameContains": "acme-staging-"},
    )  # fmt: skip


def test_instance_type_change_updates_blue_green_around_autoscaling_stubber(
    tmp_path: Path, stubbed: tuple[Clients, Stubber, Stubber]
) -> None:
    clients, sagemaker, scaling = stubbed
    old, new = _states(tmp_path)
    assert new.model_name == old.model_name and new.config_name != old.config_name
    _live_reads(old, new, sagemaker, scaling)
    plan = make_plan(new, read_live(clients, new))
    assert [c.operation for c in plan.calls] == [
        "create_endpoint_config", "deregister_scalable_target", "update_endpoint",
        "register_scalable_target", "put_scaling_policy",
    ]  # fmt: skip
    assert "InstanceType: ml.g4dn.xlarge -> ml.g5.2xlarge" in plan.differences
    sagemaker.add_response("create_endpoint_config", {"EndpointConfigArn": ARN},
                           new.config_request)  # fmt: skip
    scaling.add_response("deregister_scalable_target", {}, {
        "ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
        "ScalableDimension": SCALABLE_DIMENSION})  # fmt: skip
    sagemaker.add_response("update_endpoint", {"EndpointArn": ARN}, {
        "EndpointName": "acme-staging", "EndpointConfigName": new.config_name,
        "DeploymentConfig": {"BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 300}},
    })  # fmt: skip
    sagemaker.add_response("describe_endpoint", _endpoint(old.config_name, "Updating"))
    sagemaker.add_response("describe_endpoint", _endpoint(new.config_name, "InService"))
    scaling.add_response("register_scalable_target", {}, new.scalable_target)
    scaling.add_response("put_scaling_policy", {"PolicyARN": ARN, "Alarms": []}, new.policy)
    # Only after InService: the replaced config (the model is the same one, kept).
    sagemaker.add_response("delete_endpoint_config", {}, {"EndpointConfigName": old.config_name})
    lines: list[str] = []
    result = apply_plan(plan, clients, WaitOptions(poll_seconds=0, timeout_seconds=5), lines.append)
    assert [c.operation for c in result.made][-1] == "delete_endpoint_config"
    assert (
        "acme-staging: Updating after 0 s" in lines and "acme-staging: InService after 0 s" in lines
    )


def test_failed_update_puts_autoscaling_back_and_deletes_nothing_stubber(
    tmp_path: Path, stubbed: tuple[Clients, Stubber, Stubber]
) -> None:
    clients, sagemaker, scaling = stubbed
    old, new = _states(tmp_path)
    _live_reads(old, new, sagemaker, scaling)
    plan = make_plan(new, read_live(clients, new))
    sagemaker.add_response("create_endpoint_config", {"EndpointConfigArn": ARN})
    scaling.add_response("deregister_scalable_target", {})
    sagemaker.add_response("update_endpoint", {"EndpointArn": ARN})
    sagemaker.add_response(
        "describe_endpoint",
        {**_endpoint(old.config_name, "Failed"), "FailureReason": "capacity: no ml.g5.2xlarge"},
    )
    assert old.scalable_target is not None and old.policy is not None
    scaling.add_response("register_scalable_target", {}, old.scalable_target)
    scaling.add_response("put_scaling_policy", {"PolicyARN": ARN, "Alarms": []},
                         {**old.policy, "PolicyName": ANY})  # fmt: skip
    with pytest.raises(DeployError, match="is Failed: capacity: no ml.g5.2xlarge; nothing was"):
        apply_plan(plan, clients, WaitOptions(poll_seconds=0, timeout_seconds=5), lambda _: None)
