"""One stage's endpoint from the command line's point of view: its declaration read with the
region of the AWS environment, its clients, and plan / apply / status in one call each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmetools.core.errors import DeployError
from mmetools.core.settings import Settings
from mmetools.deploy.apply import (
    ApplyResult,
    Progress,
    WaitOptions,
    apply_plan,
    artifacts_target,
    check_image_target,
)
from mmetools.deploy.declaration import EndpointDeclaration, load_declaration
from mmetools.deploy.desired import desired_state
from mmetools.deploy.plan import Clients, LiveState, Plan, make_plan, read_live


@dataclass(frozen=True)
class StageSession:
    declaration: EndpointDeclaration
    clients: Clients
    s3: Any
    session: Any

    def runtime(self) -> Any:
        """A ``sagemaker-runtime`` client (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME points it at the
        local endpoint of `mmetools endpoint serve`)."""
        from botocore.config import Config

        return self.session.client(
            "sagemaker-runtime",
            region_name=self.declaration.region,
            config=Config(read_timeout=180, retries={"mode": "standard", "max_attempts": 3}),
        )


def open_stage(
    settings: Settings, stage: str, session: Any = None, *, scaling: bool = True
) -> StageSession:
    """The declaration of ``stage`` and boto3 clients in the region the environment gives
    (``scaling=False``: for invocations only, see :func:`load_declaration`)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    session = session or boto3.session.Session()
    declaration = load_declaration(settings, stage, session.region_name, scaling=scaling)
    try:
        clients = Clients(
            session.client("sagemaker", region_name=declaration.region),
            session.client("application-autoscaling", region_name=declaration.region),
        )
        s3 = session.client("s3", region_name=declaration.region)
    except BotoCoreError as e:
        raise DeployError(f"cannot set up AWS clients: {e}") from e
    return StageSession(declaration, clients, s3, session)


def plan_stage(settings: Settings, stage: StageSession) -> Plan:
    check_image_target(stage.declaration, artifacts_target(stage.declaration, settings, stage.s3))
    state = desired_state(stage.declaration)
    return make_plan(state, read_live(stage.clients, state))


def apply_stage(
    settings: Settings, stage: StageSession, options: WaitOptions, progress: Progress
) -> tuple[Plan, ApplyResult]:
    plan = plan_stage(settings, stage)
    return plan, apply_plan(plan, stage.clients, options, progress)


def live_status(stage: StageSession) -> LiveState:
    return read_live(stage.clients, desired_state(stage.declaration))
