"""Publish integrity (issue 11): the bytes stored are the bytes hashed, and sidecars never
describe other bytes than the stored artifact's, also under races and interruptions.

Each test reproduces one defect of the issue against the real stores: a folder, and moto_server
on 127.0.0.1 for S3. Races between two publishers are ordered with SIGSTOP/SIGCONT on a real
`mmetools publish` process, as the issue describes, and ended with SIGINT.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
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

from mmetools.core.settings import Settings
from support.release.storage_support import (
    _cli_publish,
    _resume_and_interrupt,
    _stop_when,
    run,
    sidecar_lines,
)

pytestmark = pytest.mark.timeout(180)
KEY = "mme/feature~x/demo_1.tar.gz"


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
