"""Publish integrity (issue 11): the bytes stored are the bytes hashed, and sidecars never
describe other bytes than the stored artifact's, also under races and interruptions.

Each test reproduces one defect of the issue against the real stores: a folder, and moto_server
on 127.0.0.1 for S3. Races between two publishers are ordered with SIGSTOP/SIGCONT on a real
`mmetools publish` process, as the issue describes, and ended with SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.release.publish_support import MiB, make_artifact, settings_for, sha256_of
from support.release.storage_support import (
    _cli_publish,
    _resume_and_interrupt,
    _stop_when,
    run,
    sidecar_lines,
)

pytestmark = pytest.mark.timeout(180)


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
