"""The deploy tests' moto_server account: a bucket for the publish destinations, emptied of
every endpoint, model, config and autoscaling registration afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from support.deploy.declarations import BUCKET


@pytest.fixture
def bucket(aws_env: str) -> Iterator[str]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    yield BUCKET
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)
    sagemaker = boto3.client("sagemaker")
    for endpoint in sagemaker.list_endpoints()["Endpoints"]:
        sagemaker.delete_endpoint(EndpointName=endpoint["EndpointName"])
    for config in sagemaker.list_endpoint_configs()["EndpointConfigs"]:
        sagemaker.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in sagemaker.list_models()["Models"]:
        sagemaker.delete_model(ModelName=model["ModelName"])
    scaling = boto3.client("application-autoscaling")
    for policy in scaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
        "ScalingPolicies"
    ]:
        scaling.delete_scaling_policy(
            PolicyName=policy["PolicyName"], ServiceNamespace="sagemaker",
            ResourceId=policy["ResourceId"], ScalableDimension=policy["ScalableDimension"],
        )  # fmt: skip
    for target in scaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]:
        scaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=target["ResourceId"],
            ScalableDimension=target["ScalableDimension"],
        )  # fmt: skip
