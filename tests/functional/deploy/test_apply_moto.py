"""`endpoint apply` against moto_server on loopback (sagemaker and application-autoscaling): from
nothing both stages with autoscaling, a second apply with 0 mutating calls (counted by botocore's
own events, not by mmetools), a changed instance type as a new config and an update (UpdateEndpoint
through Stubber: moto lacks it), and the refusal of an image of another Triton release than the
published artifacts' evidence names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mmetools.cli import main
from mmetools.core.errors import DeployError
from mmetools.deploy.apply import WaitOptions
from mmetools.deploy.plan import Clients
from mmetools.deploy.stage import StageSession, apply_stage, open_stage, plan_stage
from support.deploy.declarations import BUCKET, PRODUCTION, STAGING, write_repo
from support.deploy.calls import mutating_calls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
FAST = WaitOptions(poll_seconds=0.05, timeout_seconds=30)


def test_apply_from_nothing_creates_both_stages_then_changes_nothing_moto(
    bucket: str, tmp_path: Path
) -> None:
    settings = write_repo(tmp_path, STAGING, PRODUCTION)
    for name in ("staging", "production"):
        stage = open_stage(settings, name)
        made = mutating_calls(stage)
        apply_stage(settings, stage, FAST, lambda _: None)
        assert made == [
            "CreateModel", "CreateEndpointConfig", "CreateEndpoint", "RegisterScalableTarget",
            "PutScalingPolicy",
        ]  # fmt: skip
    sagemaker, scaling = boto3.client("sagemaker"), boto3.client("application-autoscaling")
    production = sagemaker.describe_endpoint(EndpointName="acme-production")
    assert production["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=production["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g4dn.2xlarge", 2)
    container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/production/"
    assert container["Mode"] == "MultiModel"
    assert container["Image"].endswith("/sagemaker-tritonserver:24.12-py3")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert sorted((t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets) == [
        ("endpoint/acme-production/variant/AllTraffic", 2, 6),
        ("endpoint/acme-staging/variant/AllTraffic", 1, 2),
    ]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert sorted(
        p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] for p in policies
    ) == [300.0, 900.0]

    for name in ("staging", "production"):  # the second apply: reads only
        stage = open_stage(settings, name)
        made = mutating_calls(stage)
        plan, result = apply_stage(settings, stage, FAST, lambda _: None)
        assert (made, result.made, plan.differences) == ([], (), ())


def test_endpoint_commands_print_plan_apply_and_status_moto(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(tmp_path, STAGING)
    monkeypatch.chdir(tmp_path)
    assert main(["endpoint", "plan", "staging"]) == 0
    out = capsys.readouterr().out
    assert "endpoint acme-staging: absent (will be created)" in out
    assert "+ create_endpoint: endpoint acme-staging" in out
    assert main(["endpoint", "apply", "staging", "--poll-seconds", "0.05"]) == 0
    assert "5 changes made, InService after" in capsys.readouterr().out
    assert main(["endpoint", "apply", "staging"]) == 0
    assert "acme-staging: up to date, no change made" in capsys.readouterr().out
    assert main(["endpoint", "status", "staging"]) == 0
    out = capsys.readouterr().out
    assert "acme-staging (staging, us-east-1): InService" in out
    assert "autoscaling 1..2, target 300.0 invocations/instance/min" in out


class _UpdateThroughStubber:
    """moto's sagemaker, except UpdateEndpoint, which goes to a Stubber-validated client."""

    def __init__(self, moto: Any, stubbed: Any) -> None:
        self._moto, self._stubbed = moto, stubbed
        self.meta = moto.meta

    def update_endpoint(self, **params: Any) -> Any:
        return self._stubbed.update_endpoint(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._moto, name)


def test_changed_instance_type_makes_a_new_config_and_an_update_moto_and_stubber(
    bucket: str, tmp_path: Path
) -> None:
    settings = write_repo(tmp_path, STAGING)
    apply_stage(settings, open_stage(settings, "staging"), FAST, lambda _: None)
    before = boto3.client("sagemaker").describe_endpoint(EndpointName="acme-staging")
    changed = write_repo(tmp_path, STAGING.replace("ml.g4dn.xlarge", "ml.g4dn.4xlarge"))
    stage = open_stage(changed, "staging")
    made = mutating_calls(stage)
    stubbed = boto3.client("sagemaker")
    with Stubber(stubbed) as stubber:
        new_config = plan_stage(changed, stage).state.config_name
        stubber.add_response(
            "update_endpoint",
            {"EndpointArn": before["EndpointArn"]},
            {"EndpointName": "acme-staging", "EndpointConfigName": new_config},
        )
        session = StageSession(
            stage.declaration,
            Clients(_UpdateThroughStubber(stage.clients.sagemaker, stubbed), stage.clients.autoscaling),
            stage.s3, stage.session,
        )  # fmt: skip
        plan, _ = apply_stage(changed, session, FAST, lambda _: None)
        stubber.assert_no_pending_responses()
    assert new_config != before["EndpointConfigName"]
    assert made == [
        "CreateEndpointConfig",
        "DeregisterScalableTarget",
        "RegisterScalableTarget",
        "PutScalingPolicy",
        "DeleteEndpointConfig",
    ]  # fmt: skip  (UpdateEndpoint went to the Stubber's client)
    config = boto3.client("sagemaker").describe_endpoint_config(EndpointConfigName=new_config)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.4xlarge"
    assert "InstanceType: ml.g4dn.xlarge -> ml.g4dn.4xlarge" in plan.differences


def test_an_image_other_than_the_published_artifacts_target_is_refused_moto(
    bucket: str, tmp_path: Path
) -> None:
    manifest = {
        "evidence": {
            "target": {
                "image": "nvcr.io/nvidia/tritonserver:24.09-py3",
                "triton_version": "2.50.0",
                "python_version": "3.10",
            }
        }
    }
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key="staging/main/intent_classifier_1.tar.gz.manifest.json",
        Body=json.dumps(manifest).encode(),
    )  # fmt: skip
    settings = write_repo(tmp_path, STAGING)  # [target]: 24.12 by default, Triton 2.53.0
    stage = open_stage(settings, "staging")
    made = mutating_calls(stage)
    with pytest.raises(DeployError) as raised:
        apply_stage(settings, stage, FAST, lambda _: None)
    assert (
        "sagemaker-tritonserver:24.12-py3 serves Triton 2.53.0, but the staging artifacts"
        in str(raised.value)
    )
    assert "Triton 2.50.0 (evidence of s3://mme-endpoints/staging/main/intent_classifier_1" in str(
        raised.value
    )
    assert made == []
