"""One stage's endpoint from the command line's point of view: its declaration read with the
region of the AWS environment, its clients, and plan / apply / status in one call each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmetools.core.errors import AwsSetupError
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
        from botocore.exceptions import BotoCoreError

        try:
            return self.session.client(
                "sagemaker-runtime",
                region_name=self.declaration.region,
                config=Config(read_timeout=180, retries={"mode": "standard", "max_attempts": 3}),
            )
        except (BotoCoreError, ValueError) as e:  # ValueError: "Invalid endpoint: <url>"
            raise _setup_error(e, "sagemaker-runtime") from e


def open_stage(
    settings: Settings, stage: str, session: Any = None, *, scaling: bool = True
) -> StageSession:
    """The declaration of ``stage`` and boto3 clients in the region the environment gives
    (``scaling=False``: for invocations only, see :func:`load_declaration`). Credentials are
    looked up before any call: a missing one is an AwsSetupError naming what to set."""
    from botocore.exceptions import BotoCoreError

    session = session or aws_session()
    try:
        region = session.region_name
    except BotoCoreError as e:
        raise _setup_error(e) from e
    declaration = load_declaration(settings, stage, region, scaling=scaling)
    clients = Clients(
        _client(session, "sagemaker", declaration.region),
        _client(session, "application-autoscaling", declaration.region),
    )
    s3 = _client(session, "s3", declaration.region)
    try:
        credentials = session.get_credentials()
    except BotoCoreError as e:
        raise _setup_error(e) from e
    if credentials is None:
        raise AwsSetupError(
            f"{declaration.where}: no AWS credentials found: set AWS_PROFILE to a profile that "
            "has them, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role "
            "provides them (as boto3 looks them up)"
        )
    return StageSession(declaration, clients, s3, session)


def aws_session() -> Any:
    """A boto3 session from the environment; an unknown AWS_PROFILE or an unreadable config
    file is an AwsSetupError."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session()
    except BotoCoreError as e:
        raise _setup_error(e) from e


def _client(session: Any, service: str, region: str) -> Any:
    from botocore.exceptions import BotoCoreError

    try:
        return session.client(service, region_name=region)
    except (BotoCoreError, ValueError) as e:  # ValueError: "Invalid endpoint: <url>"
        raise _setup_error(e, service) from e


def _setup_error(error: Exception, service: str = "") -> AwsSetupError:
    from botocore.exceptions import ConfigParseError, PartialCredentialsError, ProfileNotFound

    if isinstance(error, ProfileNotFound):
        hint = "set AWS_PROFILE to a profile of your AWS config, or unset it"
    elif isinstance(error, ConfigParseError):
        hint = "fix the file, or point AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE elsewhere"
    elif isinstance(error, PartialCredentialsError):
        hint = "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither"
    elif service:
        upper = service.upper().replace("-", "_")
        hint = f"check AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_{upper} if set"
    else:
        hint = "check the AWS_* variables and the AWS config files"
    return AwsSetupError(f"the AWS environment cannot be used: {error}; {hint}")


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
