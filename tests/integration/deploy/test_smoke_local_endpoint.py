"""`mmetools smoke` through unchanged boto3 ``sagemaker-runtime`` calls against the local
multi-model endpoint (`mmetools endpoint serve`: a real Triton behind SageMaker's runtime API,
its models in S3 on moto_server): the intent_classifier artifact passes its fixtures with cold and
warm latency; an artifact that answers wrongly (its labels file reversed) fails naming each
fixture; `--warm` touches each model of production once."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import boto3
import pytest

from conftest import MODELS_DIR, REPO_ROOT
from mmetools.cli import main
from mmetools.core.settings import load_settings
from mmetools.model.folder import ModelFolder
from mmetools.pipeline import package_model
from mmetools.serving.endpoint import EndpointOptions, serve_local_endpoint
from support.deploy.declarations import BUCKET, PRODUCTION, STAGING, write_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
NAME = "intent_classifier"


def _package(root: Path, version: int, reverse_labels: bool) -> Path:
    copy = root / "models" / NAME
    shutil.copytree(MODELS_DIR / NAME, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "model_version.txt").write_text(f"{version}\n")
    if reverse_labels:
        labels = copy / f"{NAME}_postprocessing" / "1" / "labels.txt"
        labels.write_text("\n".join(reversed(labels.read_text().split())) + "\n")
    settings = load_settings(REPO_ROOT)
    return package_model(
        ModelFolder(copy), root / "dist", settings, validate=False, fetch_weights=False
    ).path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, example_weights: None) -> tuple[Path, Path]:
    """(intent_classifier_1: right, intent_classifier_2: answers with the labels reversed)."""
    root = tmp_path_factory.mktemp("smoke")
    return _package(root / "right", 1, False), _package(root / "wrong", 2, True)


@pytest.fixture
def repo(
    aws_env: str, artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A repository declaring both endpoints, its models/ holding the true fixtures; the two
    artifacts in staging's feature~x folder, the right one in production."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    right, wrong = artifacts
    s3.upload_file(str(right), BUCKET, f"staging/feature~x/{right.name}")
    s3.upload_file(str(wrong), BUCKET, f"staging/feature~x/{wrong.name}")
    s3.upload_file(str(right), BUCKET, f"production/{right.name}")
    root = tmp_path / "repo"
    write_repo(root, STAGING, PRODUCTION)
    shutil.copytree(MODELS_DIR / NAME, root / "models" / NAME,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    monkeypatch.chdir(root)
    yield root
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def test_smoke_passes_the_right_artifact_and_names_the_fixtures_of_a_wrong_one_local_endpoint(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_triton_leftovers: Path,
) -> None:
    options = EndpointOptions(wait_seconds=180)
    endpoint, stop = serve_local_endpoint(
        load_settings(REPO_ROOT), f"s3://{BUCKET}/staging", options
    )
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
        junit = repo / "smoke.xml"
        code = main(["smoke", "staging", NAME, "--branch", "feature/x", "--junit", str(junit)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "acme-staging feature~x/intent_classifier_1.tar.gz: passed (6 fixtures, cold" in out
        assert "warm p50" in out
        suite = ElementTree.parse(junit).getroot().find("testsuite")
        assert suite is not None and suite.get("tests") == "6" and suite.get("failures") == "0"

        code = main(["smoke", "staging", "intent_classifier_2.tar.gz", "--branch", "feature/x"])
        captured = capsys.readouterr()
        assert code == 1
        assert "feature~x/intent_classifier_2.tar.gz: FAILED" in captured.out
        fixture = "models/intent_classifier/tests/fixtures/greeting.json"
        assert "\nerror: feature~x/intent_classifier_2.tar.gz: fixture models/" in captured.err
        assert f"feature~x/intent_classifier_2.tar.gz: fixture {fixture}: INTENT:" in captured.err
    finally:
        stop()


def test_warm_touches_each_production_model_once_local_endpoint(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_triton_leftovers: Path,
) -> None:
    options = EndpointOptions(wait_seconds=180)
    endpoint, stop = serve_local_endpoint(
        load_settings(REPO_ROOT), f"s3://{BUCKET}/production", options
    )
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
        code = main(["smoke", "production", "intent_classifier_1.tar.gz", "--warm"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "acme-production intent_classifier_1.tar.gz: passed (first call" in out
        import json
        import urllib.request

        metrics = json.load(urllib.request.urlopen(f"{endpoint.url}/admin/metrics"))
        assert metrics["loads"] == 1
    finally:
        stop()
