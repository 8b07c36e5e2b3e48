"""Leftovers of applies that failed before their cleanup, against moto_server: models and endpoint
configs in this endpoint's content-hashed name form that nothing uses are proposed by `plan` and
deleted by `apply` after success; a hand-made one, another endpoint's and the live ones stay."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from mmetools.cli import main
from mmetools.deploy.apply import WaitOptions, apply_plan
from mmetools.deploy.stage import apply_stage, open_stage, plan_stage
from support.deploy.calls import mutating_calls
from support.deploy.declarations import BUCKET, ROLE, STAGING, write_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
FAST = WaitOptions(poll_seconds=0.05, timeout_seconds=30)
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.12-py3"
ORPHAN_MODEL = "acme-staging-m-0123456789"  # this endpoint's form, used by nothing
ORPHAN_CONFIG = "acme-staging-c-abcdef0123"
KEPT_MODELS = (
    "acme-staging-hand-made",  # someone's own model
    "acme-staging-2-m-0123456789",  # another endpoint's content-hashed name
    "acme-staging-m-NOTHEX0123",  # the form's length, not its hash
)


def _model(sagemaker: object, name: str) -> None:
    sagemaker.create_model(  # type: ignore[attr-defined]
        ModelName=name, ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/staging/",
                          "Mode": "MultiModel"},
    )  # fmt: skip


def _config(sagemaker: object, name: str, model: str) -> None:
    sagemaker.create_endpoint_config(  # type: ignore[attr-defined]
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model,
                             "InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1}],
    )  # fmt: skip


def test_apply_deletes_this_endpoints_unused_names_and_nothing_else_moto(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = write_repo(tmp_path, STAGING)
    apply_stage(settings, open_stage(settings, "staging"), FAST, lambda _: None)
    sagemaker = boto3.client("sagemaker")
    live = sagemaker.describe_endpoint(EndpointName="acme-staging")["EndpointConfigName"]
    for name in (ORPHAN_MODEL, *KEPT_MODELS):
        _model(sagemaker, name)
    _config(sagemaker, ORPHAN_CONFIG, ORPHAN_MODEL)
    _config(sagemaker, "acme-staging-2-c-abcdef0123", ORPHAN_MODEL)  # another endpoint's

    stage = open_stage(settings, "staging")
    plan = plan_stage(settings, stage)
    assert [(c.operation, next(iter(c.params.values()))) for c in plan.leftovers] == [
        ("delete_endpoint_config", ORPHAN_CONFIG),
        ("delete_model", ORPHAN_MODEL),
    ]
    assert plan.calls == () and plan.changes
    monkeypatch.chdir(tmp_path)
    assert main(["endpoint", "plan", "staging", "--detailed-exit-code"]) == 2
    out = capsys.readouterr().out
    assert f"- delete_model: leftover model {ORPHAN_MODEL} of an earlier apply" in out

    assert main(["endpoint", "status", "staging"]) == 0
    status = capsys.readouterr().out
    assert f"not used by the endpoint: {ORPHAN_CONFIG}, {ORPHAN_MODEL}" in status

    made = mutating_calls(stage)
    _, result = apply_stage(settings, stage, FAST, lambda _: None)
    assert made == ["DeleteEndpointConfig", "DeleteModel"]
    assert len(result.made) == 2
    models = {m["ModelName"] for m in sagemaker.list_models()["Models"]}
    configs = {
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
    }
    assert ORPHAN_MODEL not in models and ORPHAN_CONFIG not in configs
    assert set(KEPT_MODELS) <= models
    assert {live, "acme-staging-2-c-abcdef0123"} <= configs
    assert sagemaker.describe_endpoint(EndpointName="acme-staging")["EndpointConfigName"] == live

    again = open_stage(settings, "staging")
    made = mutating_calls(again)
    plan, result = apply_stage(settings, again, FAST, lambda _: None)
    assert (made, plan.leftovers, result.made) == ([], (), ())


def test_a_leftover_the_endpoint_took_up_since_the_plan_is_kept_moto(
    bucket: str, tmp_path: Path
) -> None:
    # Another apply moved the endpoint to the "leftover" between this plan and its cleanup.
    settings = write_repo(tmp_path, STAGING)
    apply_stage(settings, open_stage(settings, "staging"), FAST, lambda _: None)
    sagemaker = boto3.client("sagemaker")
    _model(sagemaker, ORPHAN_MODEL)
    _config(sagemaker, ORPHAN_CONFIG, ORPHAN_MODEL)
    stage = open_stage(settings, "staging")
    plan = plan_stage(settings, stage)
    assert len(plan.leftovers) == 2
    sagemaker.delete_endpoint(EndpointName="acme-staging")  # moto has no UpdateEndpoint
    sagemaker.create_endpoint(EndpointName="acme-staging", EndpointConfigName=ORPHAN_CONFIG)
    result = apply_plan(plan, stage.clients, FAST, lambda _: None)
    assert result.made == ()
    assert sagemaker.describe_model(ModelName=ORPHAN_MODEL)["ModelName"] == ORPHAN_MODEL
    sagemaker.describe_endpoint_config(EndpointConfigName=ORPHAN_CONFIG)
