"""The local endpoint's runtime API driven by unchanged boto3 ``invoke_endpoint`` calls, with its
models in S3 (moto_server on loopback) and a fake model server in place of Triton (named so: it
echoes the request and takes the memory the test gives it). The real Triton runs in
tests/integration/serving."""

from __future__ import annotations

import concurrent.futures
import io
import json
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

from mmetools.serving.cache import LoadFailed, LoadOutcome
from mmetools.serving.endpoint import EndpointOptions, LocalEndpoint
from mmetools.serving.source import ArtifactSource
from mmetools.testing.triton import HttpResponse
from mmetools.release.storage import parse_destination

MiB = 1024 * 1024
BUCKET = "endpoint-models"


@dataclass
class FakeModelServer:
    """Stands in for Triton: a load fetches the artifact through the real source, reads its one
    member 'reply.txt', and invocations answer '<reply>:<body>'."""

    source: ArtifactSource
    load_seconds: float = 0.0
    memory: int = 100 * MiB
    broken: set[str] = field(default_factory=set)
    on_death: Callable[[], None] = lambda: None
    baseline_bytes: int = 50 * MiB
    running: bool = False
    starts: int = 0
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.running = True
        self.starts += 1

    def stop(self) -> None:
        self.running = False

    def restart(self) -> None:
        self.start()

    def alive(self) -> bool:
        return self.running

    def memory_bytes(self) -> int:
        return self.baseline_bytes

    def load(self, target_model: str) -> LoadOutcome:
        fetched = self.source.fetch(target_model)
        time.sleep(self.load_seconds)
        if target_model in self.broken:
            raise LoadFailed(target_model, f"failed to load '{target_model}': bad config", 400)
        with tarfile.open(fetched.path) as tar:
            member = tar.extractfile("reply.txt")
            assert member is not None
            reply = member.read().decode()
        self.loads.append(target_model)
        return LoadOutcome((target_model, reply, self.starts), self.memory, fetched.seconds, 0.01)

    def unload(self, handle: Any) -> None:
        self.unloads.append(handle[0])

    def invoke(self, handle: Any, body: bytes, content_type: str, accept: str) -> HttpResponse:
        if handle[2] != self.starts:
            raise RuntimeError("the model server restarted")
        answer = f"{handle[1]}:{body.decode()}".encode()
        return HttpResponse(200, answer, {"Content-Type": "text/plain"})


def artifact(reply: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = reply.encode()
        info = tarfile.TarInfo("reply.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def s3(aws_env: str) -> Any:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def serve(
    s3: Any, tmp_path: Path
) -> Iterator[Callable[..., tuple[LocalEndpoint, FakeModelServer]]]:
    endpoints: list[LocalEndpoint] = []

    def make(**options: Any) -> tuple[LocalEndpoint, FakeModelServer]:
        fake_options = {k: options.pop(k) for k in ("load_seconds", "memory") if k in options}
        destination = parse_destination(f"s3://{BUCKET}/prefix", tmp_path, "test")
        server = FakeModelServer(ArtifactSource(destination, tmp_path / "disk"), **fake_options)
        options.setdefault("model_budget_bytes", 300 * MiB)
        # mypy takes a dataclass field of a Callable type for a read-only method.
        model_server: Any = server
        endpoint = LocalEndpoint(model_server, EndpointOptions(**options), destination.uri).start()
        endpoints.append(endpoint)
        return endpoint, server

    yield make
    for endpoint in endpoints:
        endpoint.stop()


def runtime(endpoint: LocalEndpoint, attempts: int = 1) -> Any:
    """The client application's code, pointed at the local endpoint."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint.url,
        config=Config(retries={"mode": "legacy", "total_max_attempts": attempts}),
    )


def invoke(client: Any, target: str, body: str = "x", name: str = "my-endpoint") -> tuple[str, str]:
    answer = client.invoke_endpoint(
        EndpointName=name, TargetModel=target, Body=body.encode(), ContentType="text/plain"
    )
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    return answer["Body"].read().decode(), headers["x-mmetools-model-cache"]


def put(s3: Any, name: str, reply: str | None = None) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"prefix/{name}", Body=artifact(reply or name))


@pytest.mark.integration
def test_boto3_invoke_endpoint_loads_on_first_call_and_hits_after(serve: Any, s3: Any) -> None:
    put(s3, "a_1.tar.gz", "A")
    endpoint, server = serve()
    client = runtime(endpoint)
    assert invoke(client, "a_1.tar.gz", "hello") == ("A:hello", "miss")
    assert invoke(client, "a_1.tar.gz", "again", name="any-other-name") == ("A:again", "hit")
    assert server.loads == ["a_1.tar.gz"]
    assert urllib.request.urlopen(f"{endpoint.url}/ping").status == 200


@pytest.mark.integration
def test_least_recently_used_models_are_unloaded_under_the_budget(serve: Any, s3: Any) -> None:
    for name in "abcd":
        put(s3, f"{name}_1.tar.gz")
    endpoint, server = serve(model_budget_bytes=300 * MiB, memory=100 * MiB)
    client = runtime(endpoint)
    for name in "abca":
        invoke(client, f"{name}_1.tar.gz")
    invoke(client, "d_1.tar.gz")
    assert server.unloads == ["b_1.tar.gz"]
    metrics = json.load(urllib.request.urlopen(f"{endpoint.url}/admin/metrics"))
    assert metrics["LoadedModelCount"] == 3 and metrics["evictions"] == 1
    assert metrics["ModelCacheHit"] == {"sum": 1, "sample_count": 5, "average": 0.2}
    assert metrics["per_target_model"]["a_1.tar.gz"]["invocations"] == 2


@pytest.mark.integration
def test_a_model_deleted_from_s3_is_served_until_evicted_then_not_found(
    serve: Any, s3: Any
) -> None:
    for name in "abc":
        put(s3, f"{name}_1.tar.gz")
    endpoint, server = serve(model_budget_bytes=200 * MiB, memory=100 * MiB)
    client = runtime(endpoint)
    invoke(client, "a_1.tar.gz")
    s3.delete_object(Bucket=BUCKET, Key="prefix/a_1.tar.gz")
    assert invoke(client, "a_1.tar.gz") == ("a_1.tar.gz:x", "hit")  # still loaded, as on AWS
    invoke(client, "b_1.tar.gz")
    invoke(client, "c_1.tar.gz")  # evicts a (its disk copy is no reason to load it again)
    with pytest.raises(client.exceptions.ValidationError, match="Failed to download model data"):
        invoke(client, "a_1.tar.gz")


@pytest.mark.integration
def test_errors_are_the_ones_sagemaker_clients_get(serve: Any, s3: Any) -> None:
    put(s3, "broken_1.tar.gz")
    endpoint, server = serve()
    server.broken = {"broken_1.tar.gz"}
    client = runtime(endpoint)
    with pytest.raises(client.exceptions.ModelError) as failed:
        invoke(client, "broken_1.tar.gz")
    assert failed.value.response["OriginalStatusCode"] == 400
    assert "bad config" in failed.value.response["OriginalMessage"]
    with pytest.raises(client.exceptions.ValidationError, match="Failed to download model data"):
        invoke(client, "never_1.tar.gz")
    raw = urllib.request.Request(
        f"{endpoint.url}/endpoints/e/invocations", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as missing_header:
        urllib.request.urlopen(raw)
    assert missing_header.value.code == 400
    assert missing_header.value.headers["x-amzn-ErrorType"] == "ValidationError"


@pytest.mark.integration
def test_a_request_storm_during_loads_is_answered_or_refused_never_hung(
    serve: Any, s3: Any
) -> None:
    for index in range(12):
        put(s3, f"m{index}_1.tar.gz")
    endpoint, server = serve(
        load_seconds=0.3,
        model_budget_bytes=2000 * MiB,
        wait_seconds=0.5,
        max_pending_loads=3,
        max_concurrent=16,
    )
    client = runtime(endpoint)

    def one(index: int) -> str:
        try:
            invoke(client, f"m{index % 12}_1.tar.gz")
            return "200"
        except client.exceptions.ModelNotReadyException:
            return "429 ModelNotReadyException"
        except client.exceptions.ServiceUnavailable:
            return "503 ServiceUnavailable"

    begin = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(one, range(64)))
    assert time.monotonic() - begin < 30
    assert set(outcomes) <= {"200", "429 ModelNotReadyException", "503 ServiceUnavailable"}
    assert "429 ModelNotReadyException" in outcomes and "503 ServiceUnavailable" in outcomes
    # Retried as boto3 retries by default (legacy mode retries 429 and 503), everything loads.
    patient = runtime(endpoint, attempts=20)
    for index in range(12):
        assert invoke(patient, f"m{index}_1.tar.gz")[0] == f"m{index}_1.tar.gz:x"


@pytest.mark.integration
def test_a_dead_model_server_is_restarted_and_models_reload_on_demand(serve: Any, s3: Any) -> None:
    put(s3, "a_1.tar.gz")
    endpoint, server = serve()
    client = runtime(endpoint)
    invoke(client, "a_1.tar.gz")
    server.running = False  # it died
    deadline = time.monotonic() + 10
    while server.starts < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.starts == 2
    assert invoke(client, "a_1.tar.gz") == ("a_1.tar.gz:x", "miss")
    assert server.loads == ["a_1.tar.gz", "a_1.tar.gz"]
    text = urllib.request.urlopen(f"{endpoint.url}/admin/metrics/prometheus").read().decode()
    assert "mme_model_server_restarts_total 1" in text
    assert 'mme_target_model_invocations_total{target_model="a_1.tar.gz"} 2' in text
