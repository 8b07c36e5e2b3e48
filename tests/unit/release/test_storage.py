"""Publish integrity (issue 11): the bytes stored are the bytes hashed, and sidecars never
describe other bytes than the stored artifact's, also under races and interruptions.

Each test reproduces one defect of the issue against the real stores: a folder, and moto_server
on 127.0.0.1 for S3. Races between two publishers are ordered with SIGSTOP/SIGCONT on a real
`mmetools publish` process, as the issue describes, and ended with SIGINT.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.release.publish_support import make_artifact, settings_for, sha256_of

from mmetools.core.errors import ArtifactError, PublishError
from mmetools.release.publish import PublishOptions, publish
from mmetools.release.storage import LocalArtifact, S3Tuning, SentBytes, redact_credentials
from support.release.storage_support import run, sidecar_lines

pytestmark = pytest.mark.timeout(180)


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


def test_crc32_combine_and_the_checksums_s3_can_report_for_a_build(tmp_path: Path) -> None:
    """Issue 20 #2: the checksums content_problem accepts are those of the build's bytes only."""
    import base64
    import random

    from mmetools.build.verified import LocalArtifact
    from mmetools.release.storage.s3_content import build_checksums, crc32_combine

    rng = random.Random(7)
    for _ in range(20):
        a, b = rng.randbytes(rng.randint(0, 5000)), rng.randbytes(rng.randint(0, 5000))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    data, part = rng.randbytes(10 * 1024 + 5), 1024
    crcs = tuple(zlib.crc32(data[i : i + part]) for i in range(0, len(data), part))
    local = LocalArtifact(path=tmp_path / "x_1.tar.gz", model="x", version=1, sha256="0" * 64,
                          size=len(data), manifest_path=tmp_path / "m",
                          part_size=part, part_crc32s=crcs)  # fmt: skip

    def b64(crc: int) -> str:
        return base64.b64encode(crc.to_bytes(4, "big")).decode()

    twice = [zlib.crc32(data[i : i + 2 * part]) for i in range(0, len(data), 2 * part)]
    composite = b64(zlib.crc32(b"".join(c.to_bytes(4, "big") for c in twice)))
    found = build_checksums(local, (part, 2 * part, 3 * part + 1))
    assert b64(zlib.crc32(data)) in found  # a single PutObject or CopyObject
    assert f"{composite}-{len(twice)}" in found and composite in found  # parts of 2 KiB
    assert b64(zlib.crc32(data[:-1])) not in found
