"""``mmetools endpoint plan|apply|status STAGE`` and ``mmetools smoke STAGE [MODELS...]``: the
declared SageMaker endpoints (mmetools.deploy), through boto3 with the AWS environment as boto3
reads it (AWS_PROFILE, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL ...). Registered by
:mod:`mmetools.cli`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmetools.cli.app import console, err_console

StageArgument = Annotated[str, typer.Argument(help="staging or production ([endpoints.<stage>]).")]


def _quiet_aws_logs() -> None:
    import logging

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("boto3", "botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _progress(line: str) -> None:
    err_console.print(f"[{time.strftime('%H:%M:%S')}] {line}", markup=False, soft_wrap=True)


def _print(lines: list[str]) -> None:
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


DETAILED_EXIT_CODE = "--detailed-exit-code"
CHANGES_EXIT_CODE = 2


class ChangesPlanned(Exception):
    """`endpoint plan --detailed-exit-code` found changes: not a failure, an exit code
    (:func:`mmetools.cli.main` turns it into CHANGES_EXIT_CODE)."""


def endpoint_plan_command(
    stage: StageArgument,
    detailed_exit_code: Annotated[
        bool,
        typer.Option(
            DETAILED_EXIT_CODE,
            help="Exit 0 when nothing differs, 2 when apply would change something, 1 on any "
            "error (for a drift check in CI).",
        ),
    ] = False,
) -> None:
    """What differs between [endpoints.STAGE] and what AWS reports (model, endpoint config,
    endpoint, scalable target, scaling policy, leftovers of failed applies), and the calls
    `apply` would make."""
    from mmetools.core.settings import load_settings
    from mmetools.deploy.stage import open_stage, plan_stage
    from mmetools.rendering.endpoints import plan_lines

    _quiet_aws_logs()
    settings = load_settings()
    session = open_stage(settings, stage)
    plan = plan_stage(settings, session)
    _print(plan_lines(plan))
    if detailed_exit_code and plan.changes:
        raise ChangesPlanned()


def endpoint_apply_command(
    stage: StageArgument,
    poll_seconds: Annotated[
        float, typer.Option("--poll-seconds", min=0.0, help="Between DescribeEndpoint calls.")
    ] = 30.0,
    timeout_seconds: Annotated[
        float, typer.Option("--timeout-seconds", min=1.0, help="Longest wait for InService.")
    ] = 3600.0,
) -> None:
    """Make the endpoint what [endpoints.STAGE] says: new content-hashed model and config,
    create or update the endpoint, wait for InService, autoscaling, then delete what was
    replaced. Nothing changed: no mutating call."""
    from mmetools.core.settings import load_settings
    from mmetools.deploy.apply import WaitOptions
    from mmetools.deploy.stage import apply_stage, open_stage
    from mmetools.rendering.endpoints import applied_lines, plan_lines

    _quiet_aws_logs()
    settings = load_settings()
    session = open_stage(settings, stage)
    plan, result = apply_stage(
        settings, session, WaitOptions(poll_seconds, timeout_seconds), _progress
    )
    _print(plan_lines(plan) + applied_lines(result))


def endpoint_status_command(stage: StageArgument) -> None:
    """The live state of the stage's endpoint: status, config, instances, model, autoscaling."""
    from mmetools.core.settings import load_settings
    from mmetools.deploy.stage import live_status, open_stage
    from mmetools.rendering.endpoints import status_lines

    _quiet_aws_logs()
    settings = load_settings()
    session = open_stage(settings, stage)
    _print(status_lines(session.declaration, live_status(session)))


def smoke_command(
    stage: StageArgument,
    models: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="TargetModels (name_version.tar.gz, or a path under the stage's prefix) or "
            "model names (their current version); every model folder when none.",
            show_default=False,
        ),
    ] = None,
    warm: Annotated[
        bool, typer.Option("--warm", help="Keep-warm: one call per model (its first fixture).")
    ] = False,
    branch: Annotated[
        Optional[str],
        typer.Option("--branch", help="The branch whose staging folder holds the models."),
    ] = None,
    junit: Annotated[
        Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here.")
    ] = None,
    load_wait_seconds: Annotated[
        float,
        typer.Option("--load-wait-seconds", min=0.0, help="Retry ModelNotReady this long."),
    ] = 600.0,
) -> None:
    """Invoke models on the stage's endpoint through sagemaker-runtime with their fixture cases,
    compared as `mmetools test` does; cold (first) and warm latency per model. Exit 1 naming
    the model and fixture of every failure."""
    from mmetools.core.errors import SmokeFailed
    from mmetools.core.settings import load_settings
    from mmetools.deploy.smoke import SmokeOptions, smoke_endpoint, target_models
    from mmetools.deploy.stage import open_stage
    from mmetools.rendering.endpoints import smoke_lines
    from mmetools.rendering.junit import write_smoke_junit

    _quiet_aws_logs()
    settings = load_settings()
    session = open_stage(settings, stage, scaling=False)
    names = target_models(settings, stage, models or [], branch)
    runtime = session.runtime()
    endpoint = session.declaration.name
    results = smoke_endpoint(
        runtime, endpoint, names, settings.root,
        SmokeOptions(warm_only=warm, load_wait_seconds=load_wait_seconds), _progress,
    )  # fmt: skip
    _print(smoke_lines(endpoint, results, warm))
    if junit is not None:
        write_smoke_junit(endpoint, results, junit)
    failures = [line for result in results for line in result.failures()]
    if failures:
        raise SmokeFailed(failures)
