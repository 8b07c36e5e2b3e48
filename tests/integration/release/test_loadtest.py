"""mmetools loadtest: locust statistics, the suggested target, the local run through Triton's
SageMaker frontend, and the --endpoint path's requests against moto_server on loopback."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODELS_DIR, running_moto
from support.release.evidence_support import copy_model

from mmetools import cli
from mmetools.model.cases import load_fixtures
from mmetools.release.loadtest import encoded_requests, loadtest_endpoint
from mmetools.model.folder import model_folder


@pytest.mark.integration
def test_loadtest_of_a_model_folder_writes_json_and_html_with_charts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example_weights: None,
    no_triton_leftovers: Path,
) -> None:
    model = copy_model("intent_classifier", tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    code = cli.main(
        [
            "loadtest",
            str(model.path),
            "--out",
            str(out),
            "--concurrency",
            "1,2",
            "--rates",
            "4",
            "--seconds",
            "2",
            "--instance-memory",
            "16",
            "--p99-budget-ms",
            "5000",
        ]
    )
    assert code == 0
    document = json.loads((out / "intent_classifier.loadtest.json").read_text())
    cold = document["cold_start"]
    assert cold["load_seconds"] > 0 and cold["first_request_seconds"] > 0
    # The python steps run in stub processes: the model's load adds them and their memory.
    assert cold["memory_after"]["stubs"] > cold["memory_before"]["stubs"]
    assert cold["memory_after"]["total"] > cold["memory_before"]["total"]
    assert document["instance_fit"]["models_per_instance"] >= 1
    labels = [s["label"] for s in document["steps"]]
    assert labels == ["concurrency 1", "concurrency 2", "rate 4/s"]
    for step in document["steps"]:
        assert step["requests"] > 0 and step["failures"] == 0, step
    assert document["suggestion"]["invocations_per_instance"] >= 1
    html = (out / "intent_classifier.loadtest.html").read_text()
    images = html.count("src='data:image/png;base64,")
    assert images == 3  # latency and throughput vs concurrency, fixed rates
    assert "SageMakerVariantInvocationsPerInstance" in html
    assert "locust" not in sys.modules  # the load generator stayed in its own process


@pytest.fixture
def recording_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A moto_server of its own on loopback that records every request to a file."""
    recording = tmp_path / "moto-recording.jsonl"
    environment = {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
    with running_moto(environment, cwd=tmp_path) as url:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield recording


@pytest.mark.integration
def test_endpoint_requests_go_through_invoke_endpoint(recording_moto: Path) -> None:
    model = model_folder(MODELS_DIR / "intent_classifier")
    result = loadtest_endpoint(
        "mme-staging",
        "intent_classifier_3.tar.gz",
        model,
        concurrency=(2,),
        seconds=6,  # the first boto3 request is slow on a busy machine
        p99_budget_ms=5000,
    )
    (step,) = result.steps
    assert step.requests > 0 and step.failures == 0
    assert result.cold_start is None and result.target == "endpoint mme-staging"
    recorded = [json.loads(line) for line in recording_moto.read_text().splitlines()]
    invocations = [r for r in recorded if "/invocations" in r["url"]]
    # Every counted request reached moto; requests in flight when the step ended (and botocore
    # retries on a busy machine) reached it too without being counted.
    assert len(invocations) >= step.requests
    cases = load_fixtures(model)
    expected = {
        (base64.b64decode(r["body"]), r["content_type"])
        for r in encoded_requests(cases, ["INTENT", "CONFIDENCE"])
    }
    seen = set()
    for request in invocations:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert request["method"] == "POST"
        assert request["url"].endswith("/endpoints/mme-staging/invocations")
        assert headers["x-amzn-sagemaker-target-model"] == "intent_classifier_3.tar.gz"
        body = (
            base64.b64decode(request["body"])
            if request["body_encoded"]
            else request["body"].encode()
        )
        seen.add((body, headers["content-type"]))
    assert seen <= expected and len(seen) == min(len(expected), len(invocations))
