"""What the tests of release/test_storage.py share across tiers
(or with other test files): moved here when test_storage.py was split into tiers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
from support.release.publish_support import MiB

from mmetools.release.publish import PublishOptions, PublishReport, publish
from mmetools.core.settings import Settings
from mmetools.release.storage import S3Tuning

SMALL_PARTS = S3Tuning(part_size=5 * MiB, max_concurrency=2)


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
