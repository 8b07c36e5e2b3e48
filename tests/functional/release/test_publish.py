"""Publishing: destinations, branch rules, immutability, production gets the tested bytes.

S3 tests run against a real HTTP endpoint (moto_server on 127.0.0.1, see conftest.py); folder
destinations run on tmp_path. Request counts come from botocore's own event hooks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.release.publish_support import (
    MiB,
    keys,
    make_artifact,
    new_bucket,
    s3_client,
    settings_for,
    sha256_of,
)

from mmetools import cli
from mmetools.core.settings import Settings
from mmetools.release.storage import S3Tuning
from support.release.publish_tests_support import SMALL_PARTS, actions, run


class Recorder:
    """Every S3 operation (name, key) and every HTTP attempt made by clients of ``session``."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.operations: list[tuple[str, str]] = []
        self.sent = 0
        self._lock = threading.Lock()
        session.events.register("before-parameter-build.s3", self._operation)
        session.events.register("before-send.s3", self._send)

    def _operation(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.operations.append((model.name, str(params.get("Key", ""))))

    def _send(self, **_: Any) -> None:
        with self._lock:
            self.sent += 1

    def reset(self) -> None:
        with self._lock:
            self.operations.clear()
            self.sent = 0

    def names(self) -> list[str]:
        return [name for name, _ in self.operations]


# ---------------------------------------------------------------------------------------------
# S3 (moto_server on loopback)


@pytest.fixture
def buckets(aws_env: str) -> tuple[str, str]:
    client = s3_client()
    return new_bucket(client, "staging"), new_bucket(client, "production")


@pytest.fixture
def s3_settings(tmp_path: Path, buckets: tuple[str, str]) -> Settings:
    staging, production = buckets
    return settings_for(tmp_path, f"s3://{staging}/mme", f"s3://{production}/models")


@pytest.mark.integration
def test_s3_feature_branch_goes_to_staging_only(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist")
    digest = sha256_of(artifact)
    report = run([artifact], "feature/x", s3_settings)
    assert actions(report) == [("staging", "uploaded")]
    client = s3_client()
    staging, production = buckets
    assert keys(client, staging) == [
        "mme/feature~x/demo_1.tar.gz",
        "mme/feature~x/demo_1.tar.gz.manifest.json",
        "mme/feature~x/demo_1.tar.gz.sha256",
    ]
    assert keys(client, production) == []
    head = client.head_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz")
    assert head["Metadata"] == {"sha256": digest, "model": "demo", "version": "1"}
    sidecar = client.get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz.sha256")
    assert sidecar["Body"].read() == f"{digest}  demo_1.tar.gz\n".encode()
    manifest = client.get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz.manifest.json")
    # The build's manifest plus provenance and evidence, added at publish time.
    sent = json.loads(manifest["Body"].read())
    assert {k: v for k, v in sent.items() if k not in ("provenance", "evidence")} == json.loads(
        (tmp_path / "dist/demo_1.tar.gz.manifest.json").read_text()
    )
    assert sent["evidence"]["sha256"] == sent["sha256"] and sent["provenance"]["git"]
    assert report.results[0].destination == f"s3://{staging}/mme/feature~x/demo_1.tar.gz"


@pytest.mark.integration
def test_s3_republish_is_two_head_requests(tmp_path: Path, s3_settings: Settings) -> None:
    """The artifact's sha256, then whether its sidecars (manifest last) describe it."""
    artifact = make_artifact(tmp_path / "dist")
    run([artifact], "feature/x", s3_settings)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert actions(report) == [("staging", "unchanged")]
    assert recorder.operations == [
        ("ListObjectsV2", ""),  # production's versions of demo (release/versions.py)
        ("HeadObject", "mme/feature~x/demo_1.tar.gz"),
        ("HeadObject", "mme/feature~x/demo_1.tar.gz.manifest.json"),
    ]
    assert recorder.sent == 3
    assert report.results[0].requests == 2  # the step's own: the version check's is before it


@pytest.mark.integration
def test_s3_refuses_different_bytes_and_keeps_the_original(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    first = make_artifact(tmp_path / "a", seed=1)
    second = make_artifact(tmp_path / "b", seed=2)
    run([first], "feature/x", s3_settings)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([second], "feature/x", s3_settings, session=session)
    staging = buckets[0]
    assert report.results == ()
    assert [f.message for f in report.failures] == [
        f"s3://{staging}/mme/feature~x/demo_1.tar.gz already holds different bytes (sha256 "
        f"{sha256_of(first)}, local build {sha256_of(second)}); models are immutable: bump "
        "models/demo/model_version.txt\n"
        "members that differ: changed demo_model/1/model.onnx; the model's files changed since "
        "it was published"
    ]
    # Production's versions, one HEAD, then the published manifest to name the members that differ.
    assert recorder.names() == ["ListObjectsV2", "HeadObject", "GetObject"]
    body = s3_client().get_object(Bucket=staging, Key="mme/feature~x/demo_1.tar.gz")["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == sha256_of(first)


@pytest.mark.integration
def test_s3_main_publishes_staging_then_copies_to_production_server_side(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist")
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "main", s3_settings, session=session)
    assert actions(report) == [("staging", "uploaded"), ("production", "copied")]
    staging, production = buckets
    production_writes = [
        name
        for name, key in recorder.operations
        if key.startswith("models/") and name not in ("HeadObject", "ListMultipartUploads")
    ]
    # Production's bytes never pass through this host: CopyObject only (artifact + sidecars).
    assert production_writes == ["CopyObject", "CopyObject", "CopyObject"]
    client = s3_client()
    assert keys(client, production) == [
        "models/demo_1.tar.gz",
        "models/demo_1.tar.gz.manifest.json",
        "models/demo_1.tar.gz.sha256",
    ]
    head = client.head_object(Bucket=production, Key="models/demo_1.tar.gz")
    assert head["Metadata"]["sha256"] == sha256_of(artifact)
    body = client.get_object(Bucket=production, Key="models/demo_1.tar.gz")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(artifact)
    assert actions(run([artifact], "main", s3_settings)) == [
        ("staging", "unchanged"),
        ("production", "unchanged"),
    ]


@pytest.mark.integration
def test_s3_production_refuses_when_staging_tested_different_bytes(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    tested = make_artifact(tmp_path / "tested", seed=1)
    rebuilt = make_artifact(tmp_path / "rebuilt", seed=2)
    run([tested], "main", s3_settings, s3=SMALL_PARTS)
    staging, production = buckets
    client = s3_client()
    client.delete_object(Bucket=production, Key="models/demo_1.tar.gz")  # a fresh production
    report = run([rebuilt], "main", s3_settings)
    assert report.results == ()
    assert [f.message for f in report.failures] == [
        f"refusing to publish demo_1.tar.gz to production: staging "
        f"s3://{staging}/mme/main/demo_1.tar.gz holds different bytes (sha256 "
        f"{sha256_of(tested)}) than the local build (sha256 {sha256_of(rebuilt)}); production "
        "only gets the bytes staging tested: publish the exact artifact staging holds, or bump "
        "models/demo/model_version.txt\n"
        "members that differ: changed demo_model/1/model.onnx; the model's files changed since "
        "it was published"
    ]
    assert "models/demo_1.tar.gz" not in keys(client, production)


@pytest.mark.integration
def test_s3_dry_run_writes_nothing(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "main", s3_settings, session=session, dry_run=True)
    staging = buckets[0]
    assert [(r.role, r.action, r.detail) for r in report.results] == [
        ("staging", "dry-run", "would upload 12.0 MiB in 3 parts of 5 MiB"),
        (
            "production",
            "dry-run",
            f"would copy server-side from s3://{staging}/mme/main/demo_1.tar.gz",
        ),
    ]
    assert set(recorder.names()) == {"ListObjectsV2", "HeadObject"}  # reads only
    client = s3_client()
    assert keys(client, buckets[0]) == keys(client, buckets[1]) == []


@pytest.mark.integration
def test_s3_multipart_above_the_threshold_with_the_parts_crc32s(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert [r.detail for r in report.results] == ["12.0 MiB in 3 parts of 5 MiB"]
    assert recorder.names().count("UploadPart") == 3
    client = s3_client()
    head = client.head_object(
        Bucket=buckets[0], Key="mme/feature~x/demo_1.tar.gz", ChecksumMode="ENABLED"
    )
    assert head["ETag"].endswith('-3"')
    # S3's composite checksum (computed by moto from the bytes it received): the CRC32 of the
    # parts' CRC32s, the same as the one of the bytes read.
    data = artifact.read_bytes()
    parts = [zlib.crc32(data[at : at + 5 * MiB]) for at in range(0, len(data), 5 * MiB)]
    composite = zlib.crc32(b"".join(crc.to_bytes(4, "big") for crc in parts))
    expected = base64.b64encode(composite.to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"] in (f"{expected}-3", expected)  # moto leaves out the -3
    assert head.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    assert head["Metadata"]["sha256"] == sha256_of(artifact)
    assert client.list_multipart_uploads(Bucket=buckets[0]).get("Uploads", []) == []


@pytest.mark.integration
def test_s3_single_request_upload_stores_the_full_crc32(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=1 * MiB)
    run([artifact], "feature/x", s3_settings)
    head = s3_client().head_object(
        Bucket=buckets[0], Key="mme/feature~x/demo_1.tar.gz", ChecksumMode="ENABLED"
    )
    expected = base64.b64encode(zlib.crc32(artifact.read_bytes()).to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"] == expected
    assert "-" not in head["ETag"]


@pytest.mark.integration
def test_s3_concurrent_publisher_cannot_be_overwritten(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    """Another publisher writes the key between our HEAD and our upload: S3 refuses our write."""
    ours = make_artifact(tmp_path / "ours", size=12 * MiB, seed=1)
    theirs = make_artifact(tmp_path / "theirs", size=12 * MiB, seed=2)
    staging = buckets[0]
    key = "mme/feature~x/demo_1.tar.gz"
    session = boto3.session.Session()
    raced: list[str] = []

    def other_publisher_wins(**_: Any) -> None:
        if not raced:
            raced.append(key)
            s3_client().upload_file(
                str(theirs), staging, key, ExtraArgs={"Metadata": {"sha256": sha256_of(theirs)}}
            )

    session.events.register("after-call.s3.HeadObject", other_publisher_wins)
    report = run([ours], "feature/x", s3_settings, session=session)
    assert [f.message for f in report.failures] == [
        f"s3://{staging}/{key} already holds different bytes (sha256 {sha256_of(theirs)}, local "
        f"build {sha256_of(ours)}); models are immutable: bump models/demo/model_version.txt "
        "(the published manifest cannot be read to compare members) "
        "(written concurrently by another publish)"
    ]
    client = s3_client()
    body = client.get_object(Bucket=staging, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(theirs)
    assert client.list_multipart_uploads(Bucket=staging).get("Uploads", []) == []
    # The loser writes no sidecar: sidecars come after the artifact, from the winner only.
    assert keys(client, staging) == [key]


@pytest.mark.integration
def test_aws_endpoint_url_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_settings: Settings
) -> None:
    """No endpoint is passed by mmetools: boto3 reads AWS_ENDPOINT_URL[_S3] itself."""
    from conftest import free_port

    artifact = make_artifact(tmp_path / "dist")
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    report = run([artifact], "feature/x", s3_settings, attempts=1,
                 s3=S3Tuning(max_attempts=1, connect_timeout=2))  # fmt: skip
    assert len(report.failures) == 1
    message = report.failures[0].message
    # The first request is the version check's listing of production (release/versions.py).
    assert message.startswith(
        f"{s3_settings.publish.production_uri}: cannot list published versions: "
        f'EndpointConnectionError: Could not connect to the endpoint URL: "{dead}/'
    )


@pytest.mark.integration
def test_aws_endpoint_url_s3_wins_over_aws_endpoint_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: str, s3_settings: Settings
) -> None:
    from conftest import free_port

    artifact = make_artifact(tmp_path / "dist")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    assert actions(run([artifact], "feature/x", s3_settings)) == [("staging", "uploaded")]


@pytest.mark.integration
def test_aws_profile_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: str, s3_settings: Settings
) -> None:
    """Credentials and endpoint from a named profile, nothing else in the environment."""
    config = tmp_path / "aws-config"
    config.write_text(f"[profile publisher]\nregion = us-east-1\nendpoint_url = {aws_env}\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[publisher]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "publisher")
    artifact = make_artifact(tmp_path / "dist")
    session = boto3.session.Session()
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert actions(report) == [("staging", "uploaded")]
    assert session.get_credentials().access_key == "profilekey"  # type: ignore[union-attr]


@pytest.mark.integration
def test_cli_publish_prints_results_and_a_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    buckets: tuple[str, str],
) -> None:
    staging, production = buckets
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", f"s3://{staging}/mme")
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", f"s3://{production}")
    make_artifact(tmp_path / "dist", "alpha_1.tar.gz")
    make_artifact(tmp_path / "dist", "beta_2.tar.gz")
    argv = ["publish", "dist/alpha_1.tar.gz", "dist/beta_2.tar.gz", "--branch", "main"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("uploaded", "copied"))]
    assert [line.split()[:3] for line in lines] == [
        ["uploaded", "staging", f"s3://{staging}/mme/main/alpha_1.tar.gz"],
        ["copied", "production", f"s3://{production}/alpha_1.tar.gz"],
        ["uploaded", "staging", f"s3://{staging}/mme/main/beta_2.tar.gz"],
        ["copied", "production", f"s3://{production}/beta_2.tar.gz"],
    ]
    assert "publish --branch main" in out
    assert cli.main(argv + ["--dry-run"]) == 0
    assert "unchanged" in capsys.readouterr().out

    make_artifact(tmp_path / "dist", "alpha_1.tar.gz", seed=7)  # different bytes, same name
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    # Refused before staging is written (release/versions.py), naming the fix.
    assert (
        "error: models/alpha/model_version.txt: version 1 is already in production "
        f"(s3://{production}/alpha_1.tar.gz) with different bytes" in captured.err
    )
    assert "run `mmetools bump models/alpha` (it writes 2)" in captured.err
    assert "unchanged staging" in captured.out  # beta is still published (no-op)


# Issue 20 #2: staging (and any target) is checked by content, not by x-amz-meta-sha256.


def _forge(client: Any, bucket: str, key: str, body: bytes, sha256: str) -> None:
    """Another writer's object under the key, labelled with the tested build's sha256."""
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": sha256},
                      ChecksumAlgorithm="CRC32")  # fmt: skip


@pytest.mark.parametrize("same_size", [False, True])
def test_s3_staging_with_other_bytes_under_the_tested_sha256_is_refused(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings, same_size: bool
) -> None:
    staging, production = buckets
    artifact = make_artifact(tmp_path / "dist", size=64 * 1024)
    sha = sha256_of(artifact)
    client = s3_client()
    body = bytes(artifact.stat().st_size) if same_size else b"other bytes"
    _forge(client, staging, "mme/main/demo_1.tar.gz", body, sha)
    report = run([artifact], "main", s3_settings)
    assert not report.ok and report.results == ()
    (failure,) = report.failures
    assert failure.message.startswith(
        f"refusing to publish demo_1.tar.gz: s3://{staging}/mme/main/demo_1.tar.gz is labelled "
        f"with the local build's sha256 {sha} but holds other bytes ("
    ), failure.message
    size = artifact.stat().st_size
    assert ("S3's" in failure.message or "sha256" in failure.message) if same_size else (
        f"({len(body)} bytes stored, the build has {size})" in failure.message
    )  # fmt: skip
    assert keys(client, production) == []  # nothing copied to production, relabelled or not
    assert keys(client, staging) == ["mme/main/demo_1.tar.gz"]  # and no sidecar names it


def test_s3_unchanged_is_decided_by_checksums_without_reading(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)  # 3 parts of 5 MiB
    assert actions(run([artifact], "main", s3_settings)) == [
        ("staging", "uploaded"), ("production", "copied")]  # fmt: skip
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "main", s3_settings, session=session)
    assert actions(report) == [("staging", "unchanged"), ("production", "unchanged")]
    assert "GetObject" not in recorder.names()  # the multipart and copied checksums matched


def test_s3_object_in_other_parts_is_read_once_to_compare(
    tmp_path: Path, buckets: tuple[str, str], s3_settings: Settings
) -> None:
    staging, _ = buckets
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    client = s3_client()
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=6 * MiB, multipart_chunksize=6 * MiB)
    client.upload_file(str(artifact), staging, "mme/feature~x/demo_1.tar.gz", Config=config,
                       ExtraArgs={"Metadata": {"sha256": sha256_of(artifact)},
                                  "ChecksumAlgorithm": "CRC32"})  # fmt: skip
    session = boto3.session.Session()
    recorder = Recorder(session)
    report = run([artifact], "feature/x", s3_settings, session=session)
    assert actions(report) == [("staging", "unchanged")], report.failures
    assert recorder.names().count("GetObject") == 1
