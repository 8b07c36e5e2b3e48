"""Finding and fetching the published version a candidate replaces (file: and s3:// stores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.release.publish_support import new_bucket, s3_client, settings_for

from mmetools.release.published import fetch_published, find_previous
from support.release.published_support import _publish


@pytest.mark.integration
def test_s3_destinations_are_listed_and_fetched(tmp_path: Path, aws_env: str) -> None:
    client = s3_client()
    bucket = new_bucket(client)
    staging, production = f"s3://{bucket}/staging", f"s3://{bucket}/prod"
    _publish(tmp_path, tmp_path, staging, production, "demo_1.tar.gz", "demo_2.tar.gz")
    settings = settings_for(tmp_path, staging, production)
    found = find_previous("demo", 3, settings)
    assert found is not None and (found.role, found.version, found.key) == (
        "production",
        2,
        "prod/demo_2.tar.gz",
    )
    fetched = fetch_published(found, tmp_path / "fetched")
    assert fetched.read_bytes() == (tmp_path / "dist" / "demo_2.tar.gz").read_bytes()
