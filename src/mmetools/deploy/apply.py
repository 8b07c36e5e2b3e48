"""Make an endpoint what its declaration says: the plan's calls in order, a wait for InService
(with progress), and only then the deletion of the model and config it replaced.

Before any call the endpoint's image is checked against the serving target the stage's artifacts
were built and tested for (the evidence in their published manifests, else ``[target]``): an
endpoint that would load artifacts into another Triton/Python than they were tested on is refused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmetools.build.files import MANIFEST_SUFFIX
from mmetools.core.errors import DeployError
from mmetools.core.settings import Settings
from mmetools.core.targets import release_of
from mmetools.deploy.aws import aws_failure
from mmetools.deploy.declaration import EndpointDeclaration
from mmetools.deploy.plan import Call, Clients, Plan, read_live, referenced_names

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
MANIFESTS_CHECKED = 20  # the newest manifests of a prefix read for one with evidence


@dataclass(frozen=True)
class WaitOptions:
    poll_seconds: float = 30.0
    timeout_seconds: float = 3600.0


@dataclass(frozen=True)
class ApplyResult:
    endpoint: str
    made: tuple[Call, ...]  # every mutating call, in order
    seconds_to_in_service: float | None


def artifacts_target(
    declaration: EndpointDeclaration, settings: Settings, s3: Any
) -> tuple[str, str]:
    """(Triton version, where it comes from) the stage's artifacts were tested for: the evidence
    target of the newest published manifest at the endpoint's prefix (the first of the newest
    ones that carries evidence), else ``[target]``."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = declaration.model_data_url.removeprefix("s3://").partition("/")
    versions: dict[str, str] = {}
    try:
        listed = [
            item
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if str(item["Key"]).endswith(MANIFEST_SUFFIX)
        ]
        listed.sort(key=lambda item: item["LastModified"], reverse=True)
        for item in listed[:MANIFESTS_CHECKED]:
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            target = (json.loads(body).get("evidence") or {}).get("target") or {}
            if target.get("triton_version"):
                versions[str(item["Key"])] = str(target["triton_version"])
                break
    except (BotoCoreError, ClientError) as e:
        raise aws_failure(
            f"{declaration.where}: cannot read the published manifests at "
            f"{declaration.model_data_url}",
            e,
        ) from e
    except (ValueError, AttributeError) as e:
        raise DeployError(
            f"{declaration.where}: cannot read the published manifests at "
            f"{declaration.model_data_url}: {e}"
        ) from e
    if versions:
        # The newest publish says what the stage is built for now: older versions at the prefix
        # (other branches' folders, production's previous versions) may predate a target change.
        key, version = next(iter(versions.items()))
        return version, f"evidence of s3://{bucket}/{key}"
    return settings.target.triton_version, f"[target] {settings.target.image}"


def check_image_target(declaration: EndpointDeclaration, tested_for: tuple[str, str]) -> None:
    release = release_of(declaration.image.uri)
    version, source = tested_for
    if release is None or release.triton_version != version:
        served = f"Triton {release.triton_version}" if release else "an unknown Triton"
        raise DeployError(
            f"{declaration.where}: image {declaration.image.uri} serves {served}, but the "
            f"{declaration.stage} artifacts were built and tested for Triton {version} ({source}); "
            "set [target] and the image to the same release"
        )


def _call(clients: Clients, call: Call) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    client = clients.sagemaker if call.service == "sagemaker" else clients.autoscaling
    logger.debug("%s %s", call.operation, call.why)
    try:
        return dict(getattr(client, call.operation)(**call.params))
    except (BotoCoreError, ClientError) as e:
        raise aws_failure(f"{call.operation} ({call.why}) failed", e) from e


def wait_in_service(
    clients: Clients, endpoint: str, options: WaitOptions, progress: Progress
) -> float:
    """Poll DescribeEndpoint until InService; DeployError on Failed or past the timeout."""
    from botocore.exceptions import BotoCoreError, ClientError

    begin = time.monotonic()
    while True:
        try:
            answer = clients.sagemaker.describe_endpoint(EndpointName=endpoint)
        except (BotoCoreError, ClientError) as e:
            raise aws_failure(f"describe_endpoint {endpoint} failed", e) from e
        status = str(answer["EndpointStatus"])
        elapsed = time.monotonic() - begin
        progress(f"{endpoint}: {status} after {elapsed:.0f} s")
        if status == "InService":
            return elapsed
        if status in ("Failed", "OutOfService", "RollingBack"):
            raise DeployError(
                f"endpoint {endpoint} is {status}: {answer.get('FailureReason', 'no reason given')}"
                "; nothing was deleted (the previous model and config stay)"
            )
        if elapsed > options.timeout_seconds:
            raise DeployError(
                f"endpoint {endpoint} not InService after {options.timeout_seconds:.0f} s "
                f"(still {status}); nothing was deleted"
            )
        time.sleep(options.poll_seconds)


def _restore(plan: Plan, clients: Clients, progress: Progress) -> None:
    """Put back the autoscaling of the endpoint as it was (the update did not happen)."""
    for call in plan.restore:
        progress(f"{call.operation}: {call.why}")
        try:
            _call(clients, call)
        except DeployError as e:
            logger.error("could not restore autoscaling: %s", e)


def apply_plan(
    plan: Plan, clients: Clients, options: WaitOptions, progress: Progress
) -> ApplyResult:
    made: list[Call] = []
    waited: float | None = None
    deregistered = False
    for call in plan.calls:
        progress(f"{call.operation}: {call.why}")
        try:
            _call(clients, call)
            made.append(call)
            deregistered = deregistered or call.operation == "deregister_scalable_target"
            if call.operation in ("create_endpoint", "update_endpoint"):
                # Scaling needs the variant to exist: the wait comes before the autoscaling calls.
                waited = wait_in_service(clients, plan.state.endpoint_name, options, progress)
                deregistered = False  # the new variant gets the declared scaling next
        except DeployError:
            if deregistered:
                _restore(plan, clients, progress)
            raise
    for call in plan.replaced:
        progress(f"{call.operation}: {call.why}")
        _call(clients, call)
        made.append(call)
    made += delete_leftovers(plan, clients, progress)
    return ApplyResult(plan.state.endpoint_name, tuple(made), waited)


def delete_leftovers(plan: Plan, clients: Clients, progress: Progress) -> list[Call]:
    """The plan's leftover models and configs, deleted once the endpoint is InService, less
    anything the endpoint references now (read again: another apply may have moved it since the
    plan was made). A leftover already gone is skipped."""
    if not plan.leftovers:
        return []
    live = read_live(clients, plan.state)
    if live.status != "InService":
        logger.warning(
            "%s is %s: its leftover models and configs stay until an apply finds it InService",
            plan.state.endpoint_name, live.status,
        )  # fmt: skip
        return []
    keep = referenced_names(plan.state, live)
    made = []
    for call in plan.leftovers:
        if keep & set(call.params.values()):
            continue
        progress(f"{call.operation}: {call.why}")
        try:
            _call(clients, call)
        except DeployError as e:
            if not _gone(e):
                raise
            continue
        made.append(call)
    return made


def _gone(error: DeployError) -> bool:
    from botocore.exceptions import ClientError

    cause = error.__cause__
    return isinstance(cause, ClientError) and "Could not find" in str(
        cause.response.get("Error", {}).get("Message", "")
    )
