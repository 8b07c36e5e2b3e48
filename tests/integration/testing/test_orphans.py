"""Nothing of a killed `mmetools test --artifact` outlives it (issue 20 #13, #14): SIGKILL while
Triton loads a model (its python-backend stub still starting, when it never checks its parent)
leaves no tritonserver or stub process and no shared memory; the work folder it could not remove
is removed by the next server start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from support.testing.tiny_models import write_tiny_model

from mmetools.testing.triton import TritonServer

SLOW_INITIALIZE = """\
class TritonPythonModel:
    def initialize(self, args):
        import time
        time.sleep(120)

"""


def _slow_artifact(root: Path) -> tuple[Path, Path]:
    """A project whose model's Python step takes two minutes to load, and its artifact."""
    project = root / "project"
    (project / "models").mkdir(parents=True)
    (project / "mmetools.toml").write_text("")
    model = write_tiny_model(project / "models", "slow")
    (model / "requirements.txt").unlink()  # the serving env: numpy only
    step = model / "slow_double" / "1" / "model.py"
    step.write_text(step.read_text().replace("class TritonPythonModel:\n", SLOW_INITIALIZE))
    artifact = root / "slow_1.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        for name in ("slow_double", "slow_pipeline"):
            tar.add(model / name, arcname=name)
    return project, artifact


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _name(process: psutil.Process) -> str:
    """The process's name, "" when it has exited meanwhile (the target emulation's short-lived
    unshare/sh/mount processes come and go while the test looks)."""
    try:
        return process.name()
    except psutil.Error:
        return ""


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


@pytest.mark.integration
def test_sigkill_while_triton_loads_leaves_no_process_and_the_next_start_removes_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, artifact = _slow_artifact(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    cli = subprocess.Popen(
        [str(Path(sys.executable).parent / "mmetools"), "test", "--artifact", str(artifact)],
        cwd=project,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300  # the first run builds the serving env
        while not any("stub" in _name(p) for p in seen):
            assert cli.poll() is None, f"mmetools ended before loading (rc {cli.returncode})"
            assert time.monotonic() < deadline, "Triton never started loading the model"
            time.sleep(0.02)
            seen = _descendants(cli.pid)
        # 0.1 s into the stub's start-up, before it watches its parent: where main orphaned
        # it (measured: killed at once or after 0.4 s the stub exits by itself, after 0.1 s
        # it ran on for minutes)
        time.sleep(0.1)
        seen = _descendants(cli.pid)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        deadline = time.monotonic() + 10
        while (left := _alive(seen)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, [(p.pid, p.name()) for p in left]
        assert not list(Path("/dev/shm").glob(f"mmetools_{cli.pid}_*"))
        # The killed run could not remove its work folder: the next start does.
        left_folders = sorted(p.name for p in temp.iterdir())
        assert len(left_folders) == 1 and f".tmp-{cli.pid}-" in left_folders[0]
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        with TritonServer() as server:
            assert server.workdir is not None
            assert sorted(p.name for p in temp.iterdir()) == [server.workdir.name]
        assert sorted(p.name for p in temp.iterdir()) == []
    finally:
        cli.kill()
        for process in _alive(seen):
            process.kill()
