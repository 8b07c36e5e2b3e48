"""mmetools loadtest: locust statistics, the suggested target, the local run through Triton's
SageMaker frontend, and the --endpoint path's requests against moto_server on loopback."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODELS_DIR, free_port
from evidence_support import copy_model

from mmetools import cli
from mmetools.core.errors import LoadTestError
from mmetools.model.cases import load_fixtures
from mmetools.release.loadtest import (
    LoadStep,
    encoded_requests,
    loadtest_endpoint,
    parse_locust_stats,
    suggest_target,
)
from mmetools.model.folder import model_folder

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
)


def _step(label: str, throughput: float, p99: float, failures: int = 0) -> LoadStep:
    return LoadStep(label, 1, None, 10, 100, failures, throughput, 1, 2, p99, 1)


def test_locust_statistics_come_from_the_aggregated_row(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(
        HEADER
        + "POST,invoke,120,2,7,9.5,3,80,40,59.9,1.0,7,8,9,10,20,30,40,50,80,80,80\n"
        + ",Aggregated,120,2,7,9.5,3,80,40,59.9,1.0,7,8,9,10,20,30,40,50,80,80,80\n"
    )
    assert parse_locust_stats(stats) == {
        "requests": 120,
        "failures": 2,
        "throughput": 59.9,
        "p50_ms": 7,
        "p90_ms": 20,
        "p99_ms": 50,
        "mean_ms": 9.5,
    }


def test_no_requests_give_nan_percentiles_and_missing_stats_an_error(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(HEADER + ",Aggregated,0,0,0,0,0,0,0,0,0" + ",N/A" * 11 + "\n")
    assert math.isnan(parse_locust_stats(stats)["p99_ms"])
    with pytest.raises(LoadTestError, match="locust wrote no statistics"):
        parse_locust_stats(tmp_path / "missing.csv")


def test_the_suggestion_is_the_best_step_within_budget_without_errors() -> None:
    steps = [
        _step("concurrency 1", 50, 40),
        _step("concurrency 4", 120, 90),
        _step("concurrency 8", 150, 400),  # over the budget
        _step("concurrency 16", 200, 60, failures=3),  # errors
    ]
    suggestion = suggest_target(steps, p99_budget_ms=100, safety_factor=0.5)
    assert (suggestion.step, suggestion.throughput) == ("concurrency 4", 120)
    assert suggestion.invocations_per_instance == 3600  # 120/s * 0.5 * 60
    assert "p99 <= 100 ms" in suggestion.method
    none = suggest_target(steps, p99_budget_ms=10, safety_factor=0.5)
    assert none.invocations_per_instance is None and "no step met the budget" in none.method


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
    port = free_port()
    recording = tmp_path / "moto-recording.jsonl"
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert executable
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        env={
            **os.environ,
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(recording),
        },
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield recording
    finally:
        process.terminate()
        process.wait(timeout=10)


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["loadtest", "--endpoint", "e"], "--endpoint needs --target-model"),
        (["loadtest"], "give an artifact or a model folder, or --endpoint NAME"),
        (["loadtest", "models/x", "--concurrency", "1,two"], "give comma-separated numbers"),
        (["loadtest", "models/x", "--rates", "0"], "every value must be > 0"),
    ],
)
def test_loadtest_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
