"""The local multi-model endpoint with a real Triton (SageMaker frontend) and its models in S3
(moto_server on loopback), driven by unchanged boto3 ``invoke_endpoint`` calls: copies of the
intent_classifier artifact under a budget that holds two of them, so models are evicted and
loaded again; a killed Triton is restarted; ``mmetools endpoint serve`` stops cleanly on SIGTERM.
Expensive (each load takes 20-40 s here): the long fleet run is bench/bench_endpoint.py."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from conftest import MODELS_DIR
from mmetools.core.settings import load_settings
from mmetools.model.cases import load_fixtures
from mmetools.model.folder import ModelFolder
from mmetools.pipeline import package_model
from mmetools.serving.endpoint import EndpointOptions, LocalEndpoint, serve_local_endpoint
from mmetools.testing.artifact_test import request_body

MiB = 1024 * 1024
BUCKET = "endpoint-integration"
COPIES = ("intent_classifier_1.tar.gz", "intent_classifier_2.tar.gz", "intent_classifier_3.tar.gz")
BINARY = "application/vnd.sagemaker-triton.binary+json;json-header-size="


@pytest.fixture(scope="module")
def intent_artifact(tmp_path_factory: pytest.TempPathFactory, example_weights: None) -> Path:
    root = tmp_path_factory.mktemp("endpoint")
    copy = root / "models" / "intent_classifier"
    shutil.copytree(
        MODELS_DIR / "intent_classifier", copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    built = package_model(
        ModelFolder(copy), root / "dist", load_settings(), validate=False, fetch_weights=False
    )
    return built.path


@pytest.fixture
def published(aws_env: str, intent_artifact: Path) -> Iterator[str]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for name in COPIES:
        s3.upload_file(str(intent_artifact), BUCKET, f"staging/{name}")
    yield f"s3://{BUCKET}/staging"
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def check_answer(answer: dict[str, Any]) -> str:
    """The outputs against the first fixture's expected values; returns the cache header."""
    import tritonclient.http as httpclient

    case = load_fixtures(ModelFolder(MODELS_DIR / "intent_classifier"))[0]
    content_type = answer["ContentType"]
    length = int(content_type[len(BINARY) :]) if content_type.startswith(BINARY) else None
    result = httpclient.InferenceServerClient.parse_response_body(
        answer["Body"].read(), header_length=length
    )
    for expected in case.expected:
        actual = result.as_numpy(expected.name)
        if expected.datatype == "BYTES":
            assert actual.ravel().tolist() == expected.array.ravel().tolist()
        else:
            np.testing.assert_allclose(actual, expected.array, expected.rtol, expected.atol)
    return str(answer["ResponseMetadata"]["HTTPHeaders"]["x-mmetools-model-cache"])


def invoke(client: Any, target: str) -> str:
    case = load_fixtures(ModelFolder(MODELS_DIR / "intent_classifier"))[0]
    body, content_type = request_body(case, [e.name for e in case.expected])
    return check_answer(
        client.invoke_endpoint(
            EndpointName="staging-mme", TargetModel=target, Body=body, ContentType=content_type
        )
    )


def metrics(endpoint: LocalEndpoint) -> dict[str, Any]:
    return dict(json.load(urllib.request.urlopen(f"{endpoint.url}/admin/metrics")))


def test_boto3_against_the_local_endpoint_evicts_reloads_and_survives_a_triton_crash(
    published: str, no_triton_leftovers: Path
) -> None:
    # The budget holds two copies (about 310 MiB each here), not three.
    options = EndpointOptions(model_budget_bytes=700 * MiB, wait_seconds=120)
    endpoint, stop = serve_local_endpoint(load_settings(), published, options)
    try:
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint.url,
            config=Config(read_timeout=180, retries={"mode": "legacy", "total_max_attempts": 3}),
        )
        assert invoke(client, COPIES[0]) == "miss"
        assert invoke(client, COPIES[0]) == "hit"
        assert invoke(client, COPIES[1]) == "miss"
        with concurrent.futures.ThreadPoolExecutor(3) as pool:  # three first requests, one load
            states = list(pool.map(lambda _: invoke(client, COPIES[2]), range(3)))
        assert states == ["miss"] * 3
        after = metrics(endpoint)
        assert after["loads"] == 3 and after["evictions"] == 1  # copy 1 made room for copy 3
        assert invoke(client, COPIES[0]) == "miss"  # evicted, loaded again (from the disk copy)
        after = metrics(endpoint)
        assert after["evictions"] == 2 and after["LoadedModelCount"] == 2
        assert after["memory"]["models_accounted_bytes"] <= 700 * MiB
        assert after["ModelDownloadingTime"]["count"] == 4

        triton = endpoint.model_server.server  # type: ignore[attr-defined]
        os.killpg(triton.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while metrics(endpoint)["model_server_restarts"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert urllib.request.urlopen(f"{endpoint.url}/ping").status == 200
        assert invoke(client, COPIES[0]) == "miss"  # reloaded on demand by the new Triton
        assert metrics(endpoint)["LoadedModelCount"] == 1
    finally:
        stop()


def test_endpoint_serve_prints_its_url_and_stops_cleanly_on_sigterm(
    tmp_path: Path, intent_artifact: Path, no_triton_leftovers: Path
) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    shutil.copy(intent_artifact, prefix / COPIES[0])
    env = {**os.environ, "TMPDIR": str(no_triton_leftovers)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mmetools"), "endpoint", "serve", "--models-from",
         prefix.as_uri(), "--instance-memory", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("endpoint ready: http://127.0.0.1:"), line
        url = line.split()[2]
        assert urllib.request.urlopen(f"{url}/ping").status == 200
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(read_timeout=180),
        )  # fmt: skip
        assert invoke(client, COPIES[0]) == "miss"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
