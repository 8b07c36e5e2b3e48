"""`mmetools staging prune` against S3 (moto_server): the objects of gone branches' folders are
deleted, every other key (production, the production branch's staging, live branches) stays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.release.publish_support import keys, new_bucket, s3_client

from mmetools import cli
from mmetools.release import staging


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)


@pytest.mark.integration
def test_s3_staging_prune_deletes_only_gone_and_merged_branch_folders(
    tmp_path: Path,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q",
         "--allow-empty", "-m", "first")  # fmt: skip
    _git(repo, "branch", "feature/merged")  # no commit of its own: merged
    _git(repo, "switch", "-q", "-c", "feature/live")
    _git(repo, "-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-q",
         "--allow-empty", "-m", "live")  # fmt: skip
    client = s3_client()
    bucket = new_bucket(client, "prune")
    staged = ["demo_1.tar.gz", "demo_1.tar.gz.sha256", "demo_1.tar.gz.manifest.json"]
    for folder in ("main", "feature~live", "feature~merged", "feature~gone"):
        for name in staged:
            client.put_object(Bucket=bucket, Key=f"mme/{folder}/{name}", Body=b"x")
    # more than one DeleteObjects batch in a gone folder (batches of 3 here, 1000 in use)
    monkeypatch.setattr(staging, "_DELETE_BATCH", 3)
    for index in range(5):
        client.put_object(Bucket=bucket, Key=f"mme/feature~gone/old/{index}", Body=b"")
    client.put_object(Bucket=bucket, Key="prod/demo_1.tar.gz", Body=b"x")
    client.put_object(Bucket=bucket, Key="mme-other/feature~gone/keep", Body=b"x")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", f"s3://{bucket}/mme")
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", f"s3://{bucket}/prod")
    before = keys(client, bucket)

    assert cli.main(["staging", "prune"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 folder(s) would be deleted" in out
    assert keys(client, bucket) == before

    assert cli.main(["staging", "prune", "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"deleted s3://{bucket}/mme/feature~gone/" in out
    assert f"deleted s3://{bucket}/mme/feature~merged/" in out
    left = keys(client, bucket)
    assert not [k for k in left if k.startswith(("mme/feature~gone/", "mme/feature~merged/"))]
    expected = {f"mme/{folder}/{name}" for folder in ("main", "feature~live") for name in staged}
    assert set(left) == expected | {"prod/demo_1.tar.gz", "mme-other/feature~gone/keep"}
