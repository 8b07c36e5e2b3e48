"""Fault injection for publishing: a flaky S3 endpoint and a publisher killed mid-upload.

A faulty proxy on loopback (tests/support/release/faulty_s3_proxy.py) sits between boto3 and moto_server and
fails a seeded, bounded share of requests. Each test checks the outcome that matters: the
publish succeeds after retries or fails with a clear message, nothing partial is ever visible
under the final key, and a rerun completes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import botocore.retries.standard
import pytest
from support.release.faulty_s3_proxy import FaultPlan, FaultyS3Proxy, upload_parts
from support.release.publish_support import (
    MiB,
    make_artifact,
    new_bucket,
    s3_client,
    settings_for,
    sha256_of,
)

from mmetools.release.publish import PublishOptions, PublishReport, publish
from mmetools.core.settings import Settings
from mmetools.release.storage import S3Tuning

# Bounded: a retry loop that never ends fails the test instead of hanging CI.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEY = "mme/feature~x/demo_1.tar.gz"


@pytest.fixture
def proxy(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyS3Proxy]:
    """A faulty proxy in front of moto; publish_via() points AWS_ENDPOINT_URL at it."""
    # botocore sleeps up to 2**attempt s between retries (no setting lowers it). Shorten the
    # sleep only, in-process: every retry still goes through botocore's real retry logic.
    monkeypatch.setattr(
        botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.02
    )
    with FaultyS3Proxy(aws_env) as running:
        yield running


@pytest.fixture
def bucket(aws_env: str) -> str:
    return new_bucket(s3_client(), "faults")


@pytest.fixture
def settings(tmp_path: Path, bucket: str) -> Settings:
    return settings_for(tmp_path, f"s3://{bucket}/mme", f"s3://{bucket}/production")


def publish_via(
    proxy: FaultyS3Proxy,
    monkeypatch: pytest.MonkeyPatch,
    artifact: Path,
    settings: Settings,
    max_attempts: int,
    attempts: int,
) -> PublishReport:
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return publish(
            [artifact],
            "feature/x",
            settings=settings,
            options=PublishOptions(
                s3=S3Tuning(part_size=5 * MiB, max_concurrency=3, max_attempts=max_attempts),
                attempts=attempts,
                backoff_base=0.05,
            ),
        )


def assert_published(bucket: str, artifact: Path) -> None:
    client = s3_client()
    head = client.head_object(Bucket=bucket, Key=KEY)
    assert head["Metadata"]["sha256"] == sha256_of(artifact)
    body = client.get_object(Bucket=bucket, Key=KEY)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_of(artifact)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def assert_nothing_under_final_key(bucket: str) -> None:
    client = s3_client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix=KEY)
    assert [item["Key"] for item in listing.get("Contents", []) if item["Key"] == KEY] == []


def test_multipart_upload_survives_drops_5xx_and_lost_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proxy: FaultyS3Proxy,
    bucket: str,
    settings: Settings,
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    proxy.set_plan(FaultPlan(seed=7, share=0.4, kinds=("drop", "500", "503", "lost"), max_faults=5))
    report = publish_via(proxy, monkeypatch, artifact, settings, max_attempts=6, attempts=3)
    assert report.failures == ()
    assert [(r.action, r.detail) for r in report.results] == [
        ("uploaded", "12.0 MiB in 3 parts of 5 MiB")
    ]
    assert proxy.faults == 5  # the seeded schedule really injected its faults
    assert report.results[0].requests > 8  # retries are counted as requests
    assert_published(bucket, artifact)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("503", "SlowDown"), ("500", "InternalError"), ("drop", "ConnectionClosedError")],
)
def test_endpoint_that_keeps_failing_gives_up_clearly_and_a_rerun_completes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proxy: FaultyS3Proxy,
    bucket: str,
    settings: Settings,
    kind: str,
    code: str,
) -> None:
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    proxy.set_plan(FaultPlan(share=1.0, kinds=(kind,), match=upload_parts))
    report = publish_via(proxy, monkeypatch, artifact, settings, max_attempts=2, attempts=2)
    assert report.results == ()
    [failure] = report.failures
    assert failure.message.startswith(
        f"could not publish demo_1.tar.gz to s3://{bucket}/{KEY}: {code}: "
    )
    assert "(gave up after 2 attempts)" in failure.message
    assert_nothing_under_final_key(bucket)
    # Failed multipart uploads are aborted, not left to accumulate invisible parts.
    assert s3_client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    proxy.set_plan(FaultPlan())  # the endpoint recovers
    rerun = publish_via(proxy, monkeypatch, artifact, settings, max_attempts=2, attempts=2)
    assert [r.action for r in rerun.results] == ["uploaded"]
    assert_published(bucket, artifact)


def test_lost_answer_to_a_create_only_put_is_recognised_as_our_own_write(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proxy: FaultyS3Proxy,
    bucket: str,
    settings: Settings,
) -> None:
    """The PUT reaches S3 but its answer is lost; the retry meets If-None-Match: 412."""

    def artifact_put(method: str, path: str, query: dict[str, list[str]]) -> bool:
        return method == "PUT" and path.endswith(".tar.gz") and not query

    artifact = make_artifact(tmp_path / "dist", size=1 * MiB)
    proxy.set_plan(FaultPlan(share=1.0, kinds=("lost",), max_faults=1, match=artifact_put))
    report = publish_via(proxy, monkeypatch, artifact, settings, max_attempts=3, attempts=1)
    assert report.failures == ()
    assert [(r.action, r.detail) for r in report.results] == [
        ("uploaded", "the key got the same sha256 from a concurrent or retried write")
    ]
    assert proxy.faults == 1
    assert_published(bucket, artifact)


def test_sigkill_mid_publish_then_rerun(
    tmp_path: Path, aws_env: str, proxy: FaultyS3Proxy, bucket: str
) -> None:
    """Kill -9 the CLI while part uploads hang, then rerun: nothing partial, then all correct."""
    artifact = make_artifact(tmp_path / "dist", size=12 * MiB)
    proxy.set_plan(FaultPlan(share=1.0, kinds=("stall",), match=upload_parts, pass_first=1))
    mmetools = Path(sys.executable).with_name("mmetools")
    argv = [str(mmetools), "publish", "dist/demo_1.tar.gz", "--branch", "feature/x",
            "--part-size", "5", "--concurrency", "2"]  # fmt: skip
    env = {
        **os.environ,
        "MMETOOLS_STAGING_URI": f"s3://{bucket}/mme",
        "MMETOOLS_PRODUCTION_URI": f"s3://{bucket}/production",
    }
    process = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env={**env, "AWS_ENDPOINT_URL": proxy.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proxy.stalled.wait(timeout=60), "the publisher never reached a part upload"
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        proxy.release()
    client = s3_client()
    assert_nothing_under_final_key(bucket)
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [KEY]  # killed in the middle of a multipart upload

    # moto reports every upload as initiated in 2010, so the rerun's stale-upload sweep (grace
    # 10 minutes) aborts it; on AWS a younger one is left to a lifecycle rule or a later run.
    rerun = subprocess.run(
        argv, cwd=tmp_path, env={**env, "AWS_ENDPOINT_URL": aws_env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.startswith(f"uploaded  staging    s3://{bucket}/{KEY}")
    assert_published(bucket, artifact)
    again = subprocess.run(
        argv, cwd=tmp_path, env={**env, "AWS_ENDPOINT_URL": aws_env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.stdout.startswith(f"unchanged staging    s3://{bucket}/{KEY}")
