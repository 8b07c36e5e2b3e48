"""Tests of ci/pipeline.py: change detection in real git repositories, step order, run folders,
failures (the pipeline itself, src/mmetools/pipeline.py, is tested in test_pipeline.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# -------------------------------------------------------------------------------------------------
# End to end: the real pipeline script, a real Triton, S3 staging on moto_server, file:// production


def _run_pipeline(branch: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "ci/pipeline.py", "--model", "intent_classifier", "--branch", branch,
         "--no-pants", "--skip-quality"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_pipeline_publishes_to_staging_on_a_branch_and_to_production_on_main(
    tmp_path: Path, aws_env: str
) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="pipeline-staging")
    production = tmp_path / "production"
    env = {
        **os.environ,
        "MMETOOLS_STAGING_URI": "s3://pipeline-staging/mme",
        "MMETOOLS_PRODUCTION_URI": production.as_uri(),
    }
    artifact = "intent_classifier_1.tar.gz"

    feature = _run_pipeline("feature/x", env)
    assert feature.returncode == 0, feature.stdout + feature.stderr
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="pipeline-staging")["Contents"]}
    assert f"mme/feature~x/{artifact}" in keys
    assert not any(key.startswith("mme/main/") for key in keys)
    assert not production.exists()  # a feature branch never reaches production

    main = _run_pipeline("main", env)
    assert main.returncode == 0, main.stdout + main.stderr
    staged = s3.get_object(Bucket="pipeline-staging", Key=f"mme/main/{artifact}")["Body"].read()
    # production holds exactly the bytes staging holds, with the sha256 sidecar that names them
    assert (production / artifact).read_bytes() == staged
    sidecar = (production / f"{artifact}.sha256").read_text()
    assert sidecar.split()[0] == hashlib.sha256(staged).hexdigest()
    # The published manifest names the commit that built it and carries the test evidence;
    # the build's own manifest (in the run folder) has neither.
    published = json.loads((production / f"{artifact}.manifest.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert published["provenance"]["git"]["commit"] == head
    assert published["provenance"]["published_branch"] == "main"
    kinds = {t["kind"]: t["passed"] for t in published["evidence"]["tests"]}
    assert kinds == {"source": True, "mme_artifact": True}
    assert published["evidence"]["sha256"] == hashlib.sha256(staged).hexdigest()

    # A fresh run of the unchanged model (new run folder, same bytes) is `unchanged`: not
    # refused, and the published object is not rewritten.
    key = f"mme/feature~x/{artifact}"
    before = s3.head_object(Bucket="pipeline-staging", Key=key)
    again = _run_pipeline("feature/x", env)
    assert again.returncode == 0, again.stdout + again.stderr
    after = s3.head_object(Bucket="pipeline-staging", Key=key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
