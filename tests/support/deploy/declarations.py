"""A repository with [endpoints.staging] and [endpoints.production] declared, for the deploy tests."""

from __future__ import annotations

from pathlib import Path

from mmetools.core.settings import Settings, load_settings

BUCKET = "mme-endpoints"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-mme"

STAGING = f"""
[endpoints.staging]
name = "acme-staging"
instance_type = "ml.g4dn.xlarge"
initial_instance_count = 1
role_arn = "{ROLE}"
min_instances = 1
max_instances = 2
invocations_per_instance = 300
[endpoints.staging.environment]
SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE = "16777216"
"""

PRODUCTION = f"""
[endpoints.production]
name = "acme-production"
instance_type = "ml.g4dn.2xlarge"
initial_instance_count = 2
role_arn = "{ROLE}"
min_instances = 2
max_instances = 6
invocations_per_instance = 900
model_cache = "Disabled"
"""


def publish_section(bucket: str = BUCKET) -> str:
    return (
        f'[publish]\nstaging_uri = "s3://{bucket}/staging"\n'
        f'production_uri = "s3://{bucket}/production"\nnamespace_staging_by_branch = true\n'
    )


def write_repo(root: Path, *sections: str, bucket: str = BUCKET) -> Settings:
    """mmetools.toml with the publish destinations in ``bucket`` and ``sections``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mmetools.toml").write_text(publish_section(bucket) + "\n".join(sections))
    return load_settings(root, {})
