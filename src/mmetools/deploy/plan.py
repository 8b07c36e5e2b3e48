"""What AWS reports for a declared endpoint, and the calls that make it what the declaration says.

Reading is describe calls only (model, endpoint config, endpoint, scalable target, scaling
policy); the plan is an ordered list of mutating calls, each with a line saying why. An endpoint
that already matches plans no call at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mmetools.core.errors import DeployError
from mmetools.deploy.aws import aws_failure
from mmetools.deploy.desired import SCALABLE_DIMENSION, DesiredState, update_request


@dataclass(frozen=True)
class Clients:
    sagemaker: Any
    autoscaling: Any  # application-autoscaling


@dataclass(frozen=True)
class LiveState:
    endpoint: dict[str, Any] | None
    config: dict[str, Any] | None  # the endpoint's current config
    model: dict[str, Any] | None  # the current config's model
    desired_model: dict[str, Any] | None
    desired_config: dict[str, Any] | None
    scalable_target: dict[str, Any] | None
    policy: dict[str, Any] | None
    # Every model and endpoint config named in this endpoint's content-hashed form, used or not.
    own_models: tuple[str, ...] = ()
    own_configs: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return str(self.endpoint["EndpointStatus"]) if self.endpoint else "absent"


@dataclass(frozen=True)
class Call:
    service: str  # "sagemaker" or "autoscaling"
    operation: str  # boto3 method name
    params: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Plan:
    state: DesiredState
    live: LiveState
    calls: tuple[Call, ...]
    differences: tuple[str, ...]  # declaration vs live, one line each
    wait: bool  # the endpoint is created or updated: wait for InService
    replaced: tuple[Call, ...] = field(default=())  # deletions, only after InService
    # Autoscaling as it was, put back when an update fails after it was deregistered.
    restore: tuple[Call, ...] = field(default=())
    # Models and configs of this endpoint's name form that nothing references (left by applies
    # that failed before their cleanup): deleted after success, see mmetools.deploy.apply.
    leftovers: tuple[Call, ...] = field(default=())

    @property
    def changes(self) -> bool:
        return bool(self.calls or self.replaced or self.wait or self.leftovers)


def _not_found(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    message = str(error.response.get("Error", {}).get("Message", ""))
    return code in ("ResourceNotFound", "ValidationException") and (
        "Could not find" in message or "not found" in message.lower() or code == "ResourceNotFound"
    )


def _describe(client: Any, operation: str, **params: Any) -> dict[str, Any] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = getattr(client, operation)(**params)
    except ClientError as e:
        if _not_found(e):
            return None
        raise aws_failure(f"{operation} {params}", e) from e
    except BotoCoreError as e:
        raise aws_failure(f"{operation} {params}", e) from e
    answer.pop("ResponseMetadata", None)
    return dict(answer)


def read_live(clients: Clients, state: DesiredState) -> LiveState:
    sm = clients.sagemaker
    endpoint = _describe(sm, "describe_endpoint", EndpointName=state.endpoint_name)
    config = model = None
    if endpoint is not None:
        config = _describe(
            sm, "describe_endpoint_config", EndpointConfigName=endpoint["EndpointConfigName"]
        )
        variants = (config or {}).get("ProductionVariants", [])
        if variants:
            model = _describe(sm, "describe_model", ModelName=variants[0]["ModelName"])
    desired_model = (
        model
        if model is not None and model.get("ModelName") == state.model_name
        else _describe(sm, "describe_model", ModelName=state.model_name)
    )
    desired_config = (
        config
        if config is not None and config.get("EndpointConfigName") == state.config_name
        else _describe(sm, "describe_endpoint_config", EndpointConfigName=state.config_name)
    )
    targets = _describe(
        clients.autoscaling, "describe_scalable_targets", ServiceNamespace="sagemaker",
        ResourceIds=[state.resource_id], ScalableDimension=SCALABLE_DIMENSION,
    ) or {}  # fmt: skip
    policies = _describe(
        clients.autoscaling, "describe_scaling_policies", ServiceNamespace="sagemaker",
        ResourceId=state.resource_id, ScalableDimension=SCALABLE_DIMENSION,
    ) or {}  # fmt: skip
    found_targets = targets.get("ScalableTargets", [])
    name = state.policy["PolicyName"] if state.policy else None
    found_policies = [p for p in policies.get("ScalingPolicies", []) if p["PolicyName"] == name]
    return LiveState(
        endpoint, config, model, desired_model, desired_config,
        found_targets[0] if found_targets else None,
        found_policies[0] if found_policies else None,
        _listed(sm, "list_models", "Models", "ModelName", state.owns_model, state),
        _listed(sm, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName",
                state.owns_config, state),
    )  # fmt: skip


def _listed(
    client: Any, operation: str, key: str, name_key: str, owned: Callable[[str], bool],
    state: DesiredState,
) -> tuple[str, ...]:  # fmt: skip
    """The names ``operation`` lists that are of this endpoint's form (NameContains narrows the
    listing; the exact form is checked here, whatever the service did with it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    names: list[str] = []
    try:
        pages = client.get_paginator(operation).paginate(NameContains=f"{state.endpoint_name}-")
        for page in pages:
            names += [str(item[name_key]) for item in page.get(key, [])]
    except (BotoCoreError, ClientError) as e:
        raise aws_failure(f"{operation} {state.endpoint_name}-*", e) from e
    return tuple(sorted(name for name in set(names) if owned(name)))


def _variant(config: dict[str, Any] | None) -> dict[str, Any]:
    variants = (config or {}).get("ProductionVariants") or [{}]
    return dict(variants[0])


def differences(state: DesiredState, live: LiveState) -> list[str]:
    """Declaration vs what the endpoint runs now, field by field."""
    if live.endpoint is None:
        return [f"endpoint {state.endpoint_name}: absent (will be created)"]
    lines = []
    now, wanted = _variant(live.config), _variant(state.config_request)
    for key in ("InstanceType", "InitialInstanceCount", "VariantName"):
        if now.get(key) != wanted.get(key):
            lines.append(f"{key}: {now.get(key)} -> {wanted.get(key)}")
    container = (live.model or {}).get("PrimaryContainer", {})
    desired_container = state.model_request["PrimaryContainer"]
    for key in ("Image", "ModelDataUrl", "Mode", "Environment", "MultiModelConfig"):
        if container.get(key) != desired_container.get(key):
            lines.append(f"{key}: {container.get(key)} -> {desired_container.get(key)}")
    role = (live.model or {}).get("ExecutionRoleArn")
    if role != state.model_request["ExecutionRoleArn"]:
        lines.append(f"ExecutionRoleArn: {role} -> {state.model_request['ExecutionRoleArn']}")
    if live.status != "InService":
        lines.append(f"endpoint status: {live.status}")
    return lines + list(_scaling_differences(state, live))


def _scaling_differences(state: DesiredState, live: LiveState) -> Iterator[str]:
    target, policy = live.scalable_target, live.policy
    if state.scalable_target is None:
        if target is not None:
            yield "autoscaling: registered but not declared (left as it is)"
        return
    wanted = state.scalable_target
    if target is None:
        yield f"scalable target: absent -> {wanted['MinCapacity']}..{wanted['MaxCapacity']}"
    elif (target["MinCapacity"], target["MaxCapacity"]) != (
        wanted["MinCapacity"],
        wanted["MaxCapacity"],
    ):
        yield (
            f"scalable target: {target['MinCapacity']}..{target['MaxCapacity']} -> "
            f"{wanted['MinCapacity']}..{wanted['MaxCapacity']}"
        )
    assert state.policy is not None
    desired = state.policy["TargetTrackingScalingPolicyConfiguration"]
    if policy is None:
        yield f"scaling policy: absent -> {_policy_text(desired)}"
    elif not _same_policy(policy, state.policy):
        now = policy.get("TargetTrackingScalingPolicyConfiguration", {})
        yield f"scaling policy: {_policy_text(now)} -> {_policy_text(desired)}"


def _policy_text(config: dict[str, Any]) -> str:
    return (
        f"{config.get('TargetValue')} invocations/instance/min (cooldown in "
        f"{config.get('ScaleInCooldown')} s, out {config.get('ScaleOutCooldown')} s)"
    )


def _same_policy(live: dict[str, Any], wanted: dict[str, Any]) -> bool:
    now = live.get("TargetTrackingScalingPolicyConfiguration", {})
    desired = wanted["TargetTrackingScalingPolicyConfiguration"]
    metric = now.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
    return bool(
        live.get("PolicyType") == wanted["PolicyType"]
        and float(now.get("TargetValue", -1)) == desired["TargetValue"]
        and metric == desired["PredefinedMetricSpecification"]["PredefinedMetricType"]
        and now.get("ScaleInCooldown") == desired["ScaleInCooldown"]
        and now.get("ScaleOutCooldown") == desired["ScaleOutCooldown"]
    )


def make_plan(state: DesiredState, live: LiveState) -> Plan:
    calls: list[Call] = []
    if live.status == "Failed" and live.config is not None:
        if live.config.get("EndpointConfigName") == state.config_name:
            reason = live.endpoint.get("FailureReason", "") if live.endpoint else ""
            raise DeployError(
                f"endpoint {state.endpoint_name} is Failed with the declared config "
                f"{state.config_name} ({reason}); fix the declaration or delete the endpoint"
            )
    if live.status in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
        raise DeployError(
            f"endpoint {state.endpoint_name} is {live.status}: wait until it settles, then apply"
        )
    if live.desired_model is None:
        calls.append(Call("sagemaker", "create_model", state.model_request,
                          f"model {state.model_name} (image {state.declaration.image.uri})"))  # fmt: skip
    if live.desired_config is None:
        calls.append(Call("sagemaker", "create_endpoint_config", state.config_request,
                          f"endpoint config {state.config_name}"))  # fmt: skip
    current_config = live.endpoint["EndpointConfigName"] if live.endpoint else None
    wait = False
    scaling_reset = False
    restore: tuple[Call, ...] = ()
    if live.endpoint is None:
        calls.append(Call("sagemaker", "create_endpoint",
                          {"EndpointName": state.endpoint_name,
                           "EndpointConfigName": state.config_name},
                          f"endpoint {state.endpoint_name} with {state.config_name}"))  # fmt: skip
        wait = True
    elif current_config != state.config_name:
        type_changes = _variant(live.config).get("InstanceType") != state.declaration.instance_type
        if type_changes and live.scalable_target is not None:
            # AWS refuses UpdateEndpoint that changes the instance type of an autoscaled variant.
            calls.append(Call("autoscaling", "deregister_scalable_target", {
                "ServiceNamespace": "sagemaker", "ResourceId": state.resource_id,
                "ScalableDimension": SCALABLE_DIMENSION,
            }, "the instance type changes: autoscaling is registered again after the update"))  # fmt: skip
            scaling_reset = True
            restore = _restore_calls(state, live)
        calls.append(Call("sagemaker", "update_endpoint", update_request(state),
                          f"endpoint {state.endpoint_name}: {current_config} -> "
                          f"{state.config_name}"))  # fmt: skip
        wait = True
    if state.scalable_target is not None and state.policy is not None:
        target = live.scalable_target
        if (
            scaling_reset
            or target is None
            or (
                (target["MinCapacity"], target["MaxCapacity"])
                != (state.scalable_target["MinCapacity"], state.scalable_target["MaxCapacity"])
            )
        ):
            calls.append(Call("autoscaling", "register_scalable_target", state.scalable_target,
                              f"scalable target {state.resource_id}"))  # fmt: skip
        if scaling_reset or live.policy is None or not _same_policy(live.policy, state.policy):
            calls.append(Call("autoscaling", "put_scaling_policy", state.policy,
                              f"target tracking {state.policy['PolicyName']} "
                              f"({state.declaration.autoscaling.source if state.declaration.autoscaling else ''})"))  # fmt: skip
    replaced: list[Call] = []
    if current_config is not None and current_config != state.config_name:
        if state.owns_config(current_config):
            replaced.append(Call("sagemaker", "delete_endpoint_config",
                                 {"EndpointConfigName": current_config},
                                 f"replaced config {current_config}"))  # fmt: skip
        old_model = _variant(live.config).get("ModelName")
        if old_model and old_model != state.model_name and state.owns_model(old_model):
            replaced.append(Call("sagemaker", "delete_model", {"ModelName": old_model},
                                 f"replaced model {old_model}"))  # fmt: skip
    leftovers = leftover_calls(state, live)
    found = differences(state, live) + [f"{call.why}: nothing uses it" for call in leftovers]
    return Plan(state, live, tuple(calls), tuple(found), wait, tuple(replaced), restore, leftovers)


def referenced_names(state: DesiredState, live: LiveState) -> set[str]:
    """What must stay: the endpoint's current config and its model, and the declared ones."""
    names = {state.model_name, state.config_name}
    if live.endpoint is not None:
        names.add(str(live.endpoint["EndpointConfigName"]))
    model = _variant(live.config).get("ModelName")
    if model:
        names.add(str(model))
    return names


def leftover_calls(state: DesiredState, live: LiveState) -> tuple[Call, ...]:
    """Delete the configs (first: they name the models), then the models of this endpoint's
    name form that nothing references."""
    keep = referenced_names(state, live)
    configs = [name for name in live.own_configs if name not in keep and state.owns_config(name)]
    models = [name for name in live.own_models if name not in keep and state.owns_model(name)]
    return tuple(
        [Call("sagemaker", "delete_endpoint_config", {"EndpointConfigName": name},
              f"leftover config {name} of an earlier apply") for name in configs]
        + [Call("sagemaker", "delete_model", {"ModelName": name},
                f"leftover model {name} of an earlier apply") for name in models]
    )  # fmt: skip


def _restore_calls(state: DesiredState, live: LiveState) -> tuple[Call, ...]:
    target = live.scalable_target
    assert target is not None
    calls = [
        Call("autoscaling", "register_scalable_target", {
            "ServiceNamespace": "sagemaker", "ResourceId": state.resource_id,
            "ScalableDimension": SCALABLE_DIMENSION, "MinCapacity": target["MinCapacity"],
            "MaxCapacity": target["MaxCapacity"],
        }, "restore the scalable target the failed update had removed")
    ]  # fmt: skip
    policy = live.policy
    if policy is not None:
        keys = ("PolicyName", "ServiceNamespace", "ResourceId", "ScalableDimension", "PolicyType",
                "TargetTrackingScalingPolicyConfiguration")  # fmt: skip
        params = {key: policy[key] for key in keys if key in policy}
        calls.append(Call("autoscaling", "put_scaling_policy", params,
                          "restore the scaling policy the failed update had removed"))  # fmt: skip
    return tuple(calls)
