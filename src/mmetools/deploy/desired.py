"""What a declaration asks AWS for: the CreateModel and CreateEndpointConfig requests under
immutable, content-hashed names, the scalable target and the target-tracking policy.

A model's name is ``<endpoint>-m-<hash of its request>`` and a config's ``<endpoint>-c-<hash>``
(the config's request names the model, so any change of the model changes the config): the same
declaration always yields the same names, so a second apply finds everything in place, and a
changed one never overwrites what a running endpoint uses.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from mmetools.deploy.declaration import EndpointDeclaration

HASH_LENGTH = 10
MODEL_KIND, CONFIG_KIND = "m", "c"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREDEFINED_METRIC = "SageMakerVariantInvocationsPerInstance"


def content_hash(request: dict[str, Any]) -> str:
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


@dataclass(frozen=True)
class DesiredState:
    declaration: EndpointDeclaration
    model_request: dict[str, Any]  # CreateModel, ModelName included
    config_request: dict[str, Any]  # CreateEndpointConfig, EndpointConfigName included
    scalable_target: dict[str, Any] | None  # RegisterScalableTarget
    policy: dict[str, Any] | None  # PutScalingPolicy

    @property
    def model_name(self) -> str:
        return str(self.model_request["ModelName"])

    @property
    def config_name(self) -> str:
        return str(self.config_request["EndpointConfigName"])

    @property
    def endpoint_name(self) -> str:
        return self.declaration.name

    @property
    def resource_id(self) -> str:
        return resource_id(self.declaration)

    def owns_model(self, name: str) -> bool:
        """Whether ``name`` is one of this endpoint's content-hashed model names."""
        return _owned(self.declaration.name, MODEL_KIND, name)

    def owns_config(self, name: str) -> bool:
        """Whether ``name`` is one of this endpoint's content-hashed endpoint-config names."""
        return _owned(self.declaration.name, CONFIG_KIND, name)


def _owned(endpoint: str, kind: str, name: str) -> bool:
    # Exactly <endpoint>-<kind>-<10 hex digits>: another endpoint's names (acme-staging-2-m-...)
    # and hand-made ones never match.
    return re.fullmatch(f"{re.escape(endpoint)}-{kind}-[0-9a-f]{{{HASH_LENGTH}}}", name) is not None


def resource_id(declaration: EndpointDeclaration) -> str:
    return f"endpoint/{declaration.name}/variant/{declaration.variant_name}"


def policy_name(declaration: EndpointDeclaration) -> str:
    return f"{declaration.name}-invocations-per-instance"


def desired_state(declaration: EndpointDeclaration) -> DesiredState:
    container: dict[str, Any] = {
        "Image": declaration.image.uri,
        "ModelDataUrl": declaration.model_data_url,
        "Mode": "MultiModel",
        "MultiModelConfig": {"ModelCacheSetting": declaration.model_cache},
    }
    if declaration.environment:
        container["Environment"] = dict(declaration.environment)
    model = {"PrimaryContainer": container, "ExecutionRoleArn": declaration.role_arn}
    model_name = f"{declaration.name}-{MODEL_KIND}-{content_hash(model)}"
    config = {
        "ProductionVariants": [
            {
                "VariantName": declaration.variant_name,
                "ModelName": model_name,
                "InstanceType": declaration.instance_type,
                "InitialInstanceCount": declaration.initial_instance_count,
            }
        ]
    }
    config_name = f"{declaration.name}-{CONFIG_KIND}-{content_hash(config)}"
    target = policy = None
    scaling = declaration.autoscaling
    if scaling is not None:
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id(declaration),
            "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": scaling.min_instances,
            "MaxCapacity": scaling.max_instances,
        }
        policy = {
            "PolicyName": policy_name(declaration),
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id(declaration),
            "ScalableDimension": SCALABLE_DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(scaling.invocations_per_instance),
                "PredefinedMetricSpecification": {"PredefinedMetricType": PREDEFINED_METRIC},
                "ScaleInCooldown": scaling.scale_in_cooldown_s,
                "ScaleOutCooldown": scaling.scale_out_cooldown_s,
            },
        }
    return DesiredState(
        declaration,
        {"ModelName": model_name, **model},
        {"EndpointConfigName": config_name, **config},
        target,
        policy,
    )


def update_request(state: DesiredState) -> dict[str, Any]:
    """UpdateEndpoint: blue/green all at once with the declared wait, else SageMaker's default."""
    request: dict[str, Any] = {
        "EndpointName": state.endpoint_name,
        "EndpointConfigName": state.config_name,
    }
    wait = state.declaration.blue_green_wait_s
    if wait is not None:
        request["DeploymentConfig"] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                "TerminationWaitInSeconds": wait,
            }
        }
    return request
