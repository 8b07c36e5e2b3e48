"""Publish integrity (issue 11): the bytes stored are the bytes hashed, and sidecars never
describe other bytes than the stored artifact's, also under races and interruptions.

Each test reproduces one defect of the issue against the real stores: a folder, and moto_server
on 127.0.0.1 for S3. Races between two publishers are ordered with SIGSTOP/SIGCONT on a real
`mmetools publish` process, as the issue describes, and ended with SIGINT.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from publish_support import MiB, keys, make_artifact, new_bucket, s3_client, settings_for, sha256_of

from mmetools.core.errors import ArtifactError, PublishError
from mmetools.release.publish import PublishOptions, PublishReport, publish
from mmetools.core.settings import Settings
from mmetools.release.storage import LocalArtifact, S3Tuning, SentBytes, redact_credentials

pytestmark = pytest.mark.timeout(180)

SMALL_PARTS = S3Tuning(part_size=5 * MiB, max_concurrency=2)
KEY = "mme/feature~x/demo_1.tar.gz"


def run(
    artifact: Path, settings: Settings, session: boto3.session.Session | None = None
) -> PublishReport:
    return publish(
        [artifact], "feature/x", settings=settings, options=PublishOptions(s3=SMALL_PARTS),
        session=session,
    )  # fmt: skip


def sidecar_lines(read: Callable[[str], bytes]) -> tuple[str, str | None]:
    """(.sha256 text, the manifest's sha256) as read through ``read(suffix)``."""
    import json

    return read(".sha256").decode(), json.loads(read(".manifest.json")).get("sha256")


@pytest.fixture
def bucket(aws_env: str) -> str:
    return new_bucket(s3_client(), "integrity")


@pytest.fixture
def s3_settings(tmp_path: Path, bucket: str) -> Settings:
    return settings_for(tmp_path, f"s3://{bucket}/mme", f"s3://{bucket}/prod")


def s3_reader(bucket: str, key: str = KEY) -> Callable[[str], bytes]:
    client = s3_client()
    return lambda suffix: client.get_object(Bucket=bucket, Key=key + suffix)["Body"].read()


def stored_sha256(bucket: str, key: str = KEY) -> str:
    body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------------------------------------
# S3: the bytes sent are the bytes hashed


@pytest.mark.integration
def test_s3_file_rewritten_in_place_mid_upload_is_not_stored(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    """Defect: s3transfer reopened the file by name per part, so a rebuild was uploaded under
    build 1's sha256. Now the parts come from one handle and are hashed as they are read."""
    # 8 parts: at most concurrency + 2 of them are read ahead when the first one is sent.
    artifact = make_artifact(tmp_path / "dist", size=40 * MiB, seed=1)
    rebuilt = make_artifact(tmp_path / "rebuilt", size=40 * MiB, seed=2).read_bytes()
    session = boto3.session.Session()
    done: list[bool] = []

    def rebuild_in_place(**_: Any) -> None:
        if not done:
            done.append(True)
            with artifact.open("r+b") as f:  # same inode: an open handle sees the new bytes
                f.write(rebuilt)

    session.events.register("after-call.s3.UploadPart", rebuild_in_place)
    report = run(artifact, s3_settings, session)
    assert done and report.results == ()
    [failure] = report.failures
    assert "changed while it was being published" in failure.message
    assert "nothing was stored" in failure.message
    client = s3_client()
    assert keys(client, bucket) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.integration
def test_s3_file_replaced_by_rename_mid_upload_is_refused(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB, seed=1)
    rebuilt = make_artifact(tmp_path / "rebuilt", size=12 * MiB, seed=2)
    session = boto3.session.Session()
    done: list[bool] = []

    def rebuild_by_rename(**_: Any) -> None:
        if not done:
            done.append(True)
            os.replace(rebuilt, artifact)

    session.events.register("after-call.s3.UploadPart", rebuild_by_rename)
    report = run(artifact, s3_settings, session)
    [failure] = report.failures
    assert "was replaced while it was being published" in failure.message
    assert keys(s3_client(), bucket) == []


@pytest.mark.integration
def test_s3_stored_object_that_is_not_the_bytes_sent_is_deleted_before_any_sidecar(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    """The read-back check: a store that keeps other bytes than those sent (here one byte of a
    part is flipped on the wire after its checksum was computed; moto does not check part
    checksums, AWS would) gets no sidecar, and the object is removed."""
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()
    flipped: list[bool] = []

    def flip_a_byte(request: Any, **_: Any) -> None:
        if flipped:
            return
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        request.body = bytes([body[0] ^ 0xFF]) + body[1:]
        flipped.append(True)

    session.events.register("before-send.s3.UploadPart", flip_a_byte)
    report = run(artifact, s3_settings, session)
    [failure] = report.failures
    assert "the stored object is not the bytes sent" in failure.message
    assert "CRC32 " in failure.message and flipped
    assert keys(s3_client(), bucket) == []


def test_sent_bytes_checksums_each_part_whatever_the_read_sizes(tmp_path: Path) -> None:
    import base64
    import zlib

    data = os.urandom(10 * 1000 + 7)
    path = tmp_path / "demo_1.tar.gz"
    path.write_bytes(data)
    crcs = [zlib.crc32(data[at : at + 1000]) for at in range(0, len(data), 1000)]
    local = LocalArtifact(path, "demo", 1, hashlib.sha256(data).hexdigest(), len(data), path,
                          part_size=1000, part_crc32s=tuple(crcs))  # fmt: skip
    sent = SentBytes(local, part_size=1000)
    read = []
    for size in (1, 999, 1500, 3, 497, 4000, 9999):
        read.append(sent.read(size))
        if sent.size < 2000:
            assert sent.part_crc32(2) is None  # not all of part 2 was read yet
    sent.check()
    assert b"".join(read) == data
    b64 = [base64.b64encode(crc.to_bytes(4, "big")).decode() for crc in crcs]
    assert sent.part_crc32s == b64 and sent.part_crc32(11) == b64[-1]
    composite = zlib.crc32(b"".join(crc.to_bytes(4, "big") for crc in crcs))
    assert sent.stored_checksum == base64.b64encode(composite.to_bytes(4, "big")).decode() + "-11"
    sent.close()
    # The broken case: the same bytes against a build whose part 3 was different.
    other = replace(local, part_crc32s=(*crcs[:2], crcs[2] ^ 1, *crcs[3:]))
    sent = SentBytes(other, part_size=1000)
    while sent.read(4096):
        pass
    with pytest.raises(ArtifactError, match=r"changed while it was being published \(part 3 of 11"):
        sent.check()
    sent.close()
    with pytest.raises(ValueError, match="verified for 1000-byte parts"):
        SentBytes(local, part_size=500)


@pytest.mark.integration
def test_s3_completion_with_parts_that_are_not_those_read_is_refused(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    """S3 acknowledges each part with the CRC32 it checked: a list that differs from the parts
    read (a part lost or reordered by the transfer) never completes the upload."""
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    session = boto3.session.Session()

    def swap_two_parts(params: dict[str, Any], **_: Any) -> None:
        parts = params["MultipartUpload"]["Parts"]
        parts[0]["ChecksumCRC32"], parts[1]["ChecksumCRC32"] = (
            parts[1]["ChecksumCRC32"], parts[0]["ChecksumCRC32"],
        )  # fmt: skip

    session.events.register("before-parameter-build.s3.CompleteMultipartUpload", swap_two_parts)
    report = run(artifact, s3_settings, session)
    [failure] = report.failures
    assert "S3 acknowledged 3 parts whose CRC32s are not those of the 3 parts read" in (
        failure.message
    )
    client = s3_client()
    assert keys(client, bucket) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ---------------------------------------------------------------------------------------------
# Sidecars: written after the artifact, by its winner; reruns repair or refuse


def test_file_stale_sidecar_is_not_trusted(tmp_path: Path) -> None:
    """Defect: staging held build A with build C's .sha256 (a raced, interrupted loser) and C's
    rerun said "unchanged" and sent C's claim to production. The stored bytes decide now."""
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    build_a = make_artifact(tmp_path / "a", seed=1)
    build_c = make_artifact(tmp_path / "c", seed=2)
    assert run(build_a, settings).ok
    final = tmp_path / "pub/staging/feature~x/demo_1.tar.gz"
    # What the old sidecars-first order left: A's bytes with C's sidecars.
    Path(f"{final}.sha256").write_bytes(Path(f"{build_c}.sha256").read_bytes())
    Path(f"{final}.manifest.json").write_bytes(
        (build_c.parent / "demo_1.tar.gz.manifest.json").read_bytes()
    )
    report = run(build_c, settings)
    [failure] = report.failures
    assert "already holds different bytes" in failure.message
    assert f"sha256 {sha256_of(build_a)}" in failure.message
    # A's rerun repairs the sidecars to describe A's bytes.
    report = run(build_a, settings)
    assert [r.detail for r in report.results] == [
        "already published; rewrote its missing or stale sidecars"
    ]
    assert sidecar_lines(lambda s: Path(f"{final}{s}").read_bytes()) == (
        f"{sha256_of(build_a)}  demo_1.tar.gz\n", sha256_of(build_a)
    )  # fmt: skip
    assert [r.detail for r in run(build_a, settings).results] == [
        "already published with the same sha256"
    ]


@pytest.mark.integration
def test_s3_artifact_without_sidecars_is_repaired_by_its_build_and_refused_by_another(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    build_a = make_artifact(tmp_path / "a", seed=1)
    build_c = make_artifact(tmp_path / "c", seed=2)
    assert run(build_a, s3_settings).ok
    client = s3_client()
    # A publisher interrupted between its artifact and its sidecars.
    client.delete_object(Bucket=bucket, Key=KEY + ".manifest.json")
    report = run(build_c, s3_settings)
    assert not report.ok and "already holds different bytes" in report.failures[0].message
    assert keys(client, bucket) == [KEY, KEY + ".sha256"]
    report = run(build_a, s3_settings)
    assert [r.detail for r in report.results] == [
        "already published; rewrote its missing or stale sidecars"
    ]
    assert sidecar_lines(s3_reader(bucket)) == (
        f"{sha256_of(build_a)}  demo_1.tar.gz\n", sha256_of(build_a)
    )  # fmt: skip


def _cli_publish(
    artifact: Path, cwd: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen[bytes]:
    cli = str(Path(sys.executable).with_name("mmetools"))
    return subprocess.Popen(
        [cli, "publish", str(artifact), "--branch", "feature/x", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop_when(process: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "the publisher never reached the point to stop at"
        time.sleep(0.002)
    process.send_signal(signal.SIGSTOP)


def _resume_and_interrupt(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert "Traceback" not in output, output
    return output


@pytest.mark.integration
def test_file_race_with_a_stopped_then_interrupted_loser_leaves_the_winners_sidecars(
    tmp_path: Path,
) -> None:
    """Defect: two builds of one name publish at once: A is stopped while it copies, C starts
    and is stopped while it copies, A is resumed and wins, C is resumed and interrupted
    (SIGSTOP/SIGCONT, SIGINT). Sidecars went up first, so staging held A's bytes with C's."""
    build_a = make_artifact(tmp_path / "a", size=128 * MiB, seed=1)
    build_c = make_artifact(tmp_path / "c", size=128 * MiB, seed=2)
    env = {**os.environ, "MMETOOLS_STAGING_URI": "file:pub/staging",
           "MMETOOLS_PRODUCTION_URI": "file:pub/production"}  # fmt: skip
    folder = tmp_path / "pub/staging/feature~x"

    def copying(process: subprocess.Popen[bytes]) -> Callable[[], bool]:
        # Its temp file (named with its pid) is in the store: it is copying its bytes.
        pattern = f".demo_1.tar.gz.tmp-{process.pid}-*"
        return lambda: folder.is_dir() and any(folder.glob(pattern))

    winner = _cli_publish(build_a, tmp_path, env)
    loser = None
    try:
        _stop_when(winner, copying(winner))
        loser = _cli_publish(build_c, tmp_path, env)
        _stop_when(loser, copying(loser))
        winner.send_signal(signal.SIGCONT)
        output = winner.communicate(timeout=120)[0].decode()
        assert winner.returncode == 0, output
    finally:
        winner.send_signal(signal.SIGCONT)
        if loser is not None:
            _resume_and_interrupt(loser)
    final = folder / "demo_1.tar.gz"
    assert sha256_of(final) == sha256_of(build_a)
    assert sidecar_lines(lambda s: Path(f"{final}{s}").read_bytes()) == (
        f"{sha256_of(build_a)}  demo_1.tar.gz\n", sha256_of(build_a)
    )  # fmt: skip
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    report = run(build_c, settings)
    assert not report.ok and "already holds different bytes" in report.failures[0].message
    assert [r.detail for r in run(build_a, settings).results] == [
        "already published with the same sha256"
    ]
    assert sorted(p.name for p in folder.iterdir()) == [
        "demo_1.tar.gz", "demo_1.tar.gz.manifest.json", "demo_1.tar.gz.sha256"
    ]  # fmt: skip


@pytest.mark.integration
def test_s3_race_with_a_stopped_then_interrupted_loser_leaves_the_winners_sidecars(
    tmp_path: Path, bucket: str, s3_settings: Settings
) -> None:
    """The same race on S3 (moto). Winner A is a single PutObject; right before it is sent, C
    (a `mmetools publish` process) starts and is stopped once its multipart upload is open;
    then A's write goes through, and C is resumed and interrupted."""
    build_a = make_artifact(tmp_path / "a", size=1 * MiB, seed=1)
    build_c = make_artifact(tmp_path / "c", size=64 * MiB, seed=2)
    env = {**os.environ, "MMETOOLS_STAGING_URI": f"s3://{bucket}/mme",
           "MMETOOLS_PRODUCTION_URI": f"s3://{bucket}/prod"}  # fmt: skip
    client = s3_client()
    losers: list[subprocess.Popen[bytes]] = []

    def loser_starts_first(params: dict[str, Any], **_: Any) -> None:
        if losers or not str(params.get("url_path", "")).endswith(".tar.gz"):
            return
        loser = _cli_publish(build_c, tmp_path, env, "--part-size", "5", "--concurrency", "1")
        losers.append(loser)
        _stop_when(loser, lambda: bool(client.list_multipart_uploads(Bucket=bucket).get("Uploads")))

    session = boto3.session.Session()
    session.events.register("before-call.s3.PutObject", loser_starts_first)
    try:
        assert run(build_a, s3_settings, session).ok
    finally:
        for loser in losers:
            _resume_and_interrupt(loser)
    assert losers
    assert stored_sha256(bucket) == sha256_of(build_a)
    assert sidecar_lines(s3_reader(bucket)) == (
        f"{sha256_of(build_a)}  demo_1.tar.gz\n", sha256_of(build_a)
    )  # fmt: skip
    report = run(build_c, s3_settings)
    assert not report.ok and "already holds different bytes" in report.failures[0].message
    assert [r.detail for r in run(build_a, s3_settings).results] == [
        "already published with the same sha256"
    ]
    assert keys(client, bucket) == [KEY, KEY + ".manifest.json", KEY + ".sha256"]


# ---------------------------------------------------------------------------------------------
# An endpoint that never answers; credentials in AWS_ENDPOINT_URL


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never answers a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.mark.timeout(90)
def test_endpoint_that_never_answers_is_bounded_by_the_deadline_and_retries_are_shown(
    tmp_path: Path,
    silent_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect: publish hung silently for about 30 minutes (3 x 5 x 120 s)."""
    for variable, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"),
                            ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_ENDPOINT_URL", silent_endpoint)):  # fmt: skip
        monkeypatch.setenv(variable, value)
    (tmp_path / "mmetools.toml").write_text(
        "[publish]\nconnect_timeout_s = 1.0\nread_timeout_s = 1.0\ndeadline_s = 4.0\n"
    )
    settings = settings_for(tmp_path, "s3://silent-bucket/mme", "s3://silent-bucket/prod")
    artifact = make_artifact(tmp_path / "dist")
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        report = run(artifact, settings)
    elapsed = time.monotonic() - started
    [failure] = report.failures
    assert "the publish took longer than 4 s ([publish] deadline_s in mmetools.toml)" in (
        failure.message
    )
    assert elapsed < 30, elapsed
    retries = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert any("ReadTimeoutError" in line for line in retries), retries


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:password@127.0.0.1:9/x", "http://***@127.0.0.1:9/x"),
        ('Could not connect to "https://AKIA:s3cr3t@host/b"', 'Could not connect to "https://***@host/b"'),
        ("http://127.0.0.1:9/x", "http://127.0.0.1:9/x"),
        ("s3://bucket/key@v1", "s3://bucket/key@v1"),
    ],
)  # fmt: skip
def test_redact_credentials(text: str, shown: str) -> None:
    assert redact_credentials(text) == shown


def test_credentials_in_aws_endpoint_url_never_reach_logs_or_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect: http://user:password@host was printed in the log and in error messages."""
    with socket.socket() as probe:  # a port nobody listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for variable, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"),
                            ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_ENDPOINT_URL", f"http://admin:hunter2@127.0.0.1:{port}")):  # fmt: skip
        monkeypatch.setenv(variable, value)
    settings = settings_for(tmp_path, "s3://some-bucket/mme", "s3://some-bucket/prod")
    artifact = make_artifact(tmp_path / "dist")
    with caplog.at_level("DEBUG", logger="mmetools"):
        report = publish(
            [artifact], "feature/x", settings=settings,
            options=PublishOptions(s3=S3Tuning(max_attempts=2), attempts=1),
        )  # fmt: skip
    [failure] = report.failures
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mmetools"))
    assert "***@127.0.0.1" in failure.message + logged
    assert "hunter2" not in failure.message
    assert "hunter2" not in logged


def test_aws_endpoint_url_that_is_not_a_url_is_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not-a-url")
    settings = settings_for(tmp_path, "s3://some-bucket/mme", "s3://some-bucket/prod")
    with pytest.raises(PublishError) as error:
        run(make_artifact(tmp_path / "dist"), settings)
    assert str(error.value).startswith("cannot set up S3 access: ")
