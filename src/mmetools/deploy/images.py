"""The SageMaker Triton image for a serving target and a region.

AWS publishes ``sagemaker-tritonserver:<YY.MM>-py3`` in one ECR registry per region. The registry
accounts below are AWS's published table, as the SageMaker Python SDK carries it
(aws/sagemaker-python-sdk, src/sagemaker/image_uri_config/sagemaker-tritonserver.json, the
``registries`` of every version; the same table as AWS's "Docker Registry Paths and Example Code"
pages, docs.aws.amazon.com/sagemaker/latest/dg-ecr-paths/ecr-<region>.html). That file lists the
tags 23.12, 24.01, 24.03, 24.05 and 24.09; a newer release of ``[target]`` gets the same registry
and a note to check the tag exists (AWS adds tags without a new table).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmetools.core.errors import EndpointConfigError
from mmetools.core.targets import release_of

SOURCE_REGISTRIES = (
    "aws/sagemaker-python-sdk src/sagemaker/image_uri_config/sagemaker-tritonserver.json "
    "(registries per region; AWS docs: sagemaker/latest/dg-ecr-paths/ecr-<region>.html)"
)
REPOSITORY = "sagemaker-tritonserver"
LISTED_RELEASES = ("23.12", "24.01", "24.03", "24.05", "24.09")

_DLC = "763104351884"
REGISTRIES: dict[str, str] = {
    "af-south-1": "626614931356",
    "il-central-1": "780543022126",
    "ap-east-1": "871362719292",
    "ap-northeast-1": _DLC,
    "ap-northeast-2": _DLC,
    "ap-northeast-3": "364406365360",
    "ap-south-1": _DLC,
    "ap-southeast-1": _DLC,
    "ap-southeast-2": _DLC,
    "ap-southeast-3": "907027046896",
    "ca-central-1": _DLC,
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-1": _DLC,
    "eu-north-1": _DLC,
    "eu-west-1": _DLC,
    "eu-west-2": _DLC,
    "eu-west-3": _DLC,
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
    "sa-east-1": _DLC,
    "us-east-1": _DLC,
    "us-east-2": _DLC,
    "us-west-1": _DLC,
    "us-west-2": _DLC,
}


@dataclass(frozen=True)
class ServingImage:
    uri: str
    release: str  # "24.12": the Triton container release the image carries
    source: str  # where the URI came from
    note: str = ""  # what a user should check (a tag AWS's table does not list yet)


def sagemaker_image(release: str, region: str) -> ServingImage:
    """``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-tritonserver:<release>-py3``."""
    account = REGISTRIES.get(region)
    if account is None:
        raise EndpointConfigError(
            f"no SageMaker Triton registry is published for region '{region}' "
            f"({SOURCE_REGISTRIES}); set image explicitly in [endpoints.<stage>]"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    note = ""
    if release not in LISTED_RELEASES:
        note = (
            f"{REPOSITORY}:{release}-py3 is newer than the tags the SDK's table lists "
            f"({', '.join(LISTED_RELEASES)}): check that AWS publishes it in {region}"
        )
    return ServingImage(
        f"{account}.dkr.ecr.{region}.{domain}/{REPOSITORY}:{release}-py3",
        release,
        f"derived from [target] for {region}: {SOURCE_REGISTRIES}",
        note,
    )


def image_release(image: str) -> str | None:
    """The Triton release ("24.12") an NGC or SageMaker Triton image names by its tag."""
    release = release_of(image)
    return release.release if release is not None else None
