"""Which versions production holds, by name (release/production.py): a folder and S3
(moto_server), and a production that cannot be asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.release.publish_support import new_bucket, s3_client, settings_for

from conftest import free_port
from mmetools.core.errors import PublishError
from mmetools.release.production import missing_from_production
from mmetools.release.storage import S3Tuning

NAMES = ["alpha_2.tar.gz", "beta_1.tar.gz"]


def test_a_folder_production_lacks_what_it_has_no_file_for(tmp_path: Path) -> None:
    production = tmp_path / "production"
    production.mkdir()
    (production / "alpha_2.tar.gz").write_bytes(b"x")
    (production / "beta_1.tar.gz.sha256").write_text("a sidecar alone is not the artifact\n")
    settings = settings_for(tmp_path, (tmp_path / "s").as_uri(), production.as_uri())
    assert missing_from_production(NAMES, settings) == ["beta_1.tar.gz"]


@pytest.mark.integration
def test_s3_production_is_asked_by_head_per_name(tmp_path: Path, aws_env: str) -> None:
    client = s3_client()
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="prod/beta_1.tar.gz", Body=b"x")
    client.put_object(Bucket=bucket, Key="alpha_2.tar.gz", Body=b"outside the prefix")
    settings = settings_for(tmp_path, f"s3://{bucket}/staging", f"s3://{bucket}/prod")
    assert missing_from_production(NAMES, settings) == ["alpha_2.tar.gz"]


def test_an_s3_production_that_cannot_be_asked_is_an_error_not_a_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = settings_for(tmp_path, "s3://staging-b/s", "s3://production-b/p")
    with pytest.raises(PublishError, match="s3://production-b/p: cannot check which versions"):
        missing_from_production(NAMES, settings, tuning=S3Tuning(max_attempts=1))
