"""The real ci/pipeline in a repository that declares both endpoints: a branch publishes to staging
(S3 on moto_server) and smokes the new artifact on the staging endpoint; main publishes to
production and warms it there with its first-call latency. The endpoints are the local
multi-model endpoint (a real Triton behind SageMaker's runtime API) reached through boto3's
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from conftest import MODELS_DIR, REPO_ROOT
from mmetools.core.settings import load_settings
from mmetools.serving.endpoint import EndpointOptions, serve_local_endpoint
from support.deploy.declarations import BUCKET, PRODUCTION, STAGING, publish_section

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
NAME = "intent_classifier"


def _repository(root: Path) -> Path:
    """A git and DVC repository with the toolkit's ci/, one example model (weights present), an
    mmetools.toml declaring both endpoints over S3 destinations; the .venv is the checkout's."""
    root.mkdir()
    shutil.copytree(REPO_ROOT / "ci", root / "ci", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(MODELS_DIR / NAME, root / "models" / NAME,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")
    # The DVC repository with its example remote (fetch checks the weights were pushed there).
    shutil.copytree(
        REPO_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp")
    )
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    settings = (REPO_ROOT / "mmetools.toml").read_text().split("[publish]")[0]
    (root / "mmetools.toml").write_text(settings + publish_section() + STAGING + PRODUCTION)
    for argv in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *argv], cwd=root, check=True, capture_output=True)  # fmt: skip
    return root


def _pipeline(root: Path, branch: str, runtime_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url}
    return subprocess.run(
        [sys.executable, "ci/pipeline.py", "--model", NAME, "--branch", branch, "--no-pants",
         "--skip-quality"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_branch_smokes_on_staging_and_main_warms_production_local_endpoint(
    aws_env: str, example_weights: None, tmp_path: Path
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    root = _repository(tmp_path / "repo")
    options = EndpointOptions(wait_seconds=180)

    endpoint, stop = serve_local_endpoint(
        load_settings(REPO_ROOT), f"s3://{BUCKET}/staging", options
    )
    try:
        feature = _pipeline(root, "feature/x", endpoint.url)
    finally:
        stop()
    assert feature.returncode == 0, feature.stdout + feature.stderr
    assert "smoke on acme-staging feature~x/intent_classifier_1.tar.gz: 6/6 fixtures passed, " \
        "first call" in feature.stdout  # fmt: skip

    endpoint, stop = serve_local_endpoint(
        load_settings(REPO_ROOT), f"s3://{BUCKET}/production", options
    )
    try:
        main = _pipeline(root, "main", endpoint.url)
    finally:
        stop()
    assert main.returncode == 0, main.stdout + main.stderr
    assert "warm call on acme-production intent_classifier_1.tar.gz: 1/1 fixtures passed, " \
        "first call" in main.stdout  # fmt: skip
    assert "smoke on acme-staging" not in main.stdout  # main warms production only
