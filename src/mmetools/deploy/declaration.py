"""``[endpoints.staging]`` and ``[endpoints.production]`` of mmetools.toml: the two SageMaker
multi-model endpoints, declared in the repository (docs/endpoints.md).

Checked here, with errors naming the file, the stage and the key: required keys, types and
ranges, the S3 prefix against the stage's publish destination, the container environment
(SAGEMAKER_TRITON_* only), the region the AWS environment gives against an optional ``region``
guard, and the autoscaling target (a number, or ``"loadtest"``: the suggestion of the newest
``mmetools loadtest --endpoint <name>`` report).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmetools.core.errors import EndpointConfigError
from mmetools.core.settings import Settings
from mmetools.deploy.images import ServingImage, image_release, sagemaker_image
from mmetools.release.publish.plan import destinations

STAGES = ("staging", "production")
# SageMaker names: letters, digits and inner hyphens, 63 at most; the endpoint's name leaves room
# for the content-hashed suffix of its models and configs (mmetools.deploy.desired).
NAME_MAX = 50
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/\S+$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
ENVIRONMENT_PREFIX = "SAGEMAKER_TRITON_"
FROM_LOADTEST = "loadtest"
CACHE_SETTINGS = ("Enabled", "Disabled")

KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "instance_type": str,
    "initial_instance_count": int,
    "role_arn": str,
    "min_instances": int,
    "max_instances": int,
    "invocations_per_instance": (int, str),
    "region": str,
    "s3_prefix": str,
    "image": str,
    "environment": dict,
    "model_cache": str,
    "variant_name": str,
    "scale_in_cooldown_s": int,
    "scale_out_cooldown_s": int,
    "loadtest_dir": str,
    "loadtest_endpoint": str,
    "blue_green_wait_s": int,
}
REQUIRED = ("name", "instance_type", "role_arn")
_KIND_NAMES = {int: "an integer", str: "a string", dict: "a table"}


@dataclass(frozen=True)
class Autoscaling:
    min_instances: int
    max_instances: int
    # SageMakerVariantInvocationsPerInstance: invocations per minute per instance, all models.
    invocations_per_instance: int
    source: str  # "declared" or the loadtest report it came from
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int


@dataclass(frozen=True)
class EndpointDeclaration:
    stage: str
    name: str
    region: str
    instance_type: str
    initial_instance_count: int
    role_arn: str
    model_data_url: str  # "s3://bucket/prefix/": the stage's publish destination
    image: ServingImage
    environment: tuple[tuple[str, str], ...]
    model_cache: str
    variant_name: str
    autoscaling: Autoscaling | None
    blue_green_wait_s: int | None  # None: UpdateEndpoint without a DeploymentConfig

    @property
    def where(self) -> str:
        return f"[endpoints.{self.stage}]"


def declared_stages(settings: Settings) -> tuple[str, ...]:
    return tuple(stage for stage in STAGES if stage in settings.endpoints)


def load_declaration(
    settings: Settings, stage: str, region: str | None, *, scaling: bool = True
) -> EndpointDeclaration:
    """The checked declaration of ``stage``; ``region`` as boto3 reads it from the environment.
    ``scaling=False`` (smoke, keep-warm: they only invoke) leaves the autoscaling target unread,
    so a keep-warm job needs no load test report."""
    path = settings.settings_file
    unknown = sorted(set(settings.endpoints) - set(STAGES))
    if unknown:
        raise EndpointConfigError(
            f"{path}: [endpoints.{unknown[0]}] is not a stage (stages: {', '.join(STAGES)})"
        )
    if stage not in STAGES:
        raise EndpointConfigError(f"{stage!r} is not a stage (stages: {', '.join(STAGES)})")
    if stage not in settings.endpoints:
        raise EndpointConfigError(f"{path}: no [endpoints.{stage}] is declared")
    raw = settings.endpoints[stage]
    where = f"{path} [endpoints.{stage}]"
    _check_keys(raw, where)
    name = str(raw["name"])
    if not _NAME.match(name) or len(name) > NAME_MAX:
        raise EndpointConfigError(
            f"{where} name = {name!r}: letters, digits and inner hyphens, {NAME_MAX} at most "
            "(SageMaker allows 63; the rest is the content hash of models and configs)"
        )
    region = _region(raw, region, where)
    instance_type = str(raw["instance_type"])
    if not _INSTANCE.match(instance_type):
        raise EndpointConfigError(
            f"{where} instance_type = {instance_type!r}: not like ml.g5.2xlarge"
        )
    role = str(raw["role_arn"])
    if not _ROLE.match(role):
        raise EndpointConfigError(
            f"{where} role_arn = {role!r}: not arn:aws:iam::<account>:role/<name>"
        )
    count = _positive(raw, "initial_instance_count", 1, where)
    model_cache = str(raw.get("model_cache", "Enabled"))
    if model_cache not in CACHE_SETTINGS:
        raise EndpointConfigError(f"{where} model_cache = {model_cache!r}: Enabled or Disabled")
    return EndpointDeclaration(
        stage=stage,
        name=name,
        region=region,
        instance_type=instance_type,
        initial_instance_count=count,
        role_arn=role,
        model_data_url=_model_data_url(settings, stage, raw, where),
        image=_image(settings, raw, region, where),
        environment=_environment(raw, where),
        model_cache=model_cache,
        variant_name=_variant(raw, where),
        autoscaling=_autoscaling(settings, raw, name, count, where) if scaling else None,
        blue_green_wait_s=_optional_positive(raw, "blue_green_wait_s", where),
    )


def _check_keys(raw: Mapping[str, Any], where: str) -> None:
    for key, value in raw.items():
        if key not in KEYS:
            raise EndpointConfigError(
                f"{where} has no key '{key}' (known: {', '.join(sorted(KEYS))})"
            )
        expected = KEYS[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            names = " or ".join(_KIND_NAMES[kind] for kind in kinds)
            raise EndpointConfigError(f"{where} {key} must be {names}, got {value!r}")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise EndpointConfigError(f"{where} is missing {', '.join(missing)}")


def _positive(raw: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = int(raw.get(key, default))
    if value < 1:
        raise EndpointConfigError(f"{where} {key} = {value}: must be 1 or more")
    return value


def _optional_positive(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    return _positive(raw, key, 1, where) if key in raw else None


def _region(raw: Mapping[str, Any], region: str | None, where: str) -> str:
    if not region:
        raise EndpointConfigError(
            f"{where}: no AWS region in the environment: set AWS_DEFAULT_REGION, or region in "
            "the profile's config (boto3 reads these; it does not read AWS_REGION)"
        )
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    try:
        validate_region_name(region)
    except InvalidRegionError as e:
        raise EndpointConfigError(
            f"{where}: the AWS environment's region {region!r} is no region name (check "
            "AWS_DEFAULT_REGION, or region in the profile's config)"
        ) from e
    guard = raw.get("region")
    if guard is not None and guard != region:
        raise EndpointConfigError(
            f"{where} region = {guard!r} but the AWS environment is in {region!r}: "
            "refusing to touch an endpoint in another region"
        )
    return region


def _model_data_url(settings: Settings, stage: str, raw: Mapping[str, Any], where: str) -> str:
    staging, production = destinations(settings)
    destination = staging if stage == "staging" else production
    setting = f"publish.{stage}_uri"
    if destination.kind != "s3":
        raise EndpointConfigError(
            f"{where}: the {stage} publish destination ({setting} = {destination.uri}) is not "
            "in S3; a SageMaker endpoint serves an s3://bucket/prefix (set MMETOOLS_"
            f"{stage.upper()}_URI)"
        )
    declared = raw.get("s3_prefix")
    if declared is not None and declared.rstrip("/") != destination.uri.rstrip("/"):
        raise EndpointConfigError(
            f"{where} s3_prefix = {declared!r} is not the {stage} publish destination "
            f"({setting} = {destination.uri}): the endpoint would serve other artifacts than "
            "the ones published and tested"
        )
    return destination.uri.rstrip("/") + "/"


def _image(settings: Settings, raw: Mapping[str, Any], region: str, where: str) -> ServingImage:
    target = settings.target
    built_for = image_release(target.image)
    explicit = raw.get("image")
    if explicit is None:
        if built_for is None:
            raise EndpointConfigError(
                f"{where}: [target] image {target.image!r} names no Triton release, so no "
                "SageMaker image can be derived; set image explicitly"
            )
        try:
            return sagemaker_image(built_for, region)
        except EndpointConfigError as e:
            raise EndpointConfigError(f"{where}: {e}") from e
    release = image_release(explicit)
    if release is None:
        raise EndpointConfigError(
            f"{where} image = {explicit!r}: not a tritonserver/sagemaker-tritonserver "
            "YY.MM-py3 image, so its target cannot be checked against the artifacts'"
        )
    return ServingImage(explicit, release, f"set explicitly in {where}")


def _environment(raw: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    environment = raw.get("environment", {})
    for key, value in environment.items():
        if not key.startswith(ENVIRONMENT_PREFIX):
            raise EndpointConfigError(
                f"{where} environment.{key}: only {ENVIRONMENT_PREFIX}* settings of Triton's "
                "SageMaker frontend belong here"
            )
        if not isinstance(value, str):
            raise EndpointConfigError(f"{where} environment.{key} must be a string, got {value!r}")
    return tuple(sorted(environment.items()))


def _variant(raw: Mapping[str, Any], where: str) -> str:
    variant = str(raw.get("variant_name", "AllTraffic"))
    if not _NAME.match(variant) or len(variant) > 63:
        raise EndpointConfigError(
            f"{where} variant_name = {variant!r}: letters, digits, inner hyphens"
        )
    return variant


def _autoscaling(
    settings: Settings, raw: Mapping[str, Any], name: str, count: int, where: str
) -> Autoscaling | None:
    keys = ("min_instances", "max_instances", "invocations_per_instance")
    if not any(key in raw for key in keys):
        return None
    missing = [key for key in keys if key not in raw]
    if missing:
        raise EndpointConfigError(f"{where}: autoscaling needs {', '.join(missing)} as well")
    low = _positive(raw, "min_instances", 1, where)
    high = _positive(raw, "max_instances", 1, where)
    if not low <= count <= high:
        raise EndpointConfigError(
            f"{where}: min_instances {low} <= initial_instance_count {count} <= max_instances "
            f"{high} does not hold"
        )
    target = raw["invocations_per_instance"]
    if isinstance(target, str):
        if target != FROM_LOADTEST:
            raise EndpointConfigError(
                f"{where} invocations_per_instance = {target!r}: a number (invocations per "
                f'minute per instance) or "{FROM_LOADTEST}"'
            )
        folder = settings.root / str(raw.get("loadtest_dir", "dist/loadtest"))
        # Another endpoint's measurement may be the one to trust (production sized by staging).
        value, source = from_loadtest(folder, str(raw.get("loadtest_endpoint", name)), where)
    else:
        value, source = _positive(raw, "invocations_per_instance", 1, where), "declared"
    return Autoscaling(
        low, high, value, source,
        _positive(raw, "scale_in_cooldown_s", 300, where),
        _positive(raw, "scale_out_cooldown_s", 60, where),
    )  # fmt: skip


def from_loadtest(folder: Path, endpoint: str, where: str) -> tuple[int, str]:
    """The suggestion of the newest ``*.loadtest.json`` of ``mmetools loadtest --endpoint
    <endpoint>`` in ``folder``, and the report's path."""
    found: list[tuple[float, Path, int]] = []
    for path in sorted(folder.glob("*.loadtest.json")) if folder.is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("target") != f"endpoint {endpoint}":
                continue
            value = document["suggestion"]["invocations_per_instance"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise EndpointConfigError(f"{path}: not a loadtest report ({e})") from e
        if isinstance(value, int) and value > 0:
            found.append((path.stat().st_mtime, path, value))
    if not found:
        raise EndpointConfigError(
            f'{where} invocations_per_instance = "{FROM_LOADTEST}": no report of `mmetools '
            f"loadtest --endpoint {endpoint}` with a suggestion in {folder} (run it, or declare "
            "a number)"
        )
    _, path, value = max(found)
    return value, f"loadtest report {path.name}"
