"""mmetools.testing.triton.lifecycle: a server start cleans up after runs whose mmetools process
died (issue 20 #13, #14). The leftover "stub" is a copy of ``sleep`` named like Triton's stub, in
a process group of its own, as a real orphaned stub is; no Triton runs in this tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mmetools.core.atomic import owned_temp_path
from mmetools.testing.triton import lifecycle
from mmetools.testing.triton.lifecycle import OWNER_RECORD, WORKDIR_NAME, remove_dead_runs


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _workdir_of(temp: Path, pid: int, pgid: int) -> Path:
    folder = owned_temp_path(temp / WORKDIR_NAME)
    folder = folder.with_name(folder.name.replace(f"-{os.getpid()}-", f"-{pid}-"))
    (folder / "repository").mkdir(parents=True)
    (folder / OWNER_RECORD).write_text(json.dumps({"pid": pid, "pgid": pgid, "shm_prefix": ""}))
    return folder


@pytest.fixture
def fake_stub(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process named triton_python_backend_stub, leading its own process group."""
    program = tmp_path / "bin" / "triton_python_backend_stub"
    program.parent.mkdir()
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", program)
    process = subprocess.Popen([str(program), "300"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def other_program() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not Triton's, leading its own process group."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _wait_exit(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.poll()


def test_next_start_kills_a_dead_runs_stub_group_and_removes_its_work_folder(
    tmp_path: Path, fake_stub: subprocess.Popen[bytes]
) -> None:
    temp = tmp_path / "tmp"
    dead_run = _workdir_of(temp, _exited_pid(), fake_stub.pid)
    remove_dead_runs(temp)
    assert _wait_exit(fake_stub) == -9
    assert not dead_run.exists()


def test_a_live_runs_folder_and_group_are_kept(
    tmp_path: Path, fake_stub: subprocess.Popen[bytes], other_program: subprocess.Popen[bytes]
) -> None:
    temp = tmp_path / "tmp"
    live_run = _workdir_of(temp, other_program.pid, fake_stub.pid)  # its owner runs
    remove_dead_runs(temp)
    assert live_run.is_dir() and fake_stub.poll() is None


def test_a_recorded_group_that_is_not_tritons_is_not_killed(
    tmp_path: Path, other_program: subprocess.Popen[bytes]
) -> None:
    temp = tmp_path / "tmp"
    dead_run = _workdir_of(temp, _exited_pid(), other_program.pid)  # the pgid was reused
    remove_dead_runs(temp)
    assert other_program.poll() is None
    assert not dead_run.exists()


def test_shared_memory_of_dead_runs_is_removed_and_of_live_ones_kept(
    tmp_path: Path, other_program: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(lifecycle, "SHM_FOLDER", str(shm))
    dead = shm / f"mmetools_{_exited_pid()}_1_0f3a"
    live = shm / f"mmetools_{other_program.pid}_1_0f3a"
    foreign = shm / "someone_else_1"
    for region in (dead, live, foreign):
        region.write_bytes(b"\0" * 64)
    remove_dead_runs(tmp_path / "tmp")
    assert (dead.exists(), live.exists(), foreign.exists()) == (False, True, True)


def test_watchdog_kills_the_group_when_its_owner_dies_without_releasing(
    fake_stub: subprocess.Popen[bytes],
) -> None:
    watchdog = lifecycle.Watchdog(fake_stub.pid)
    process = watchdog._process
    assert process is not None and process.stdin is not None
    process.stdin.close()  # what the kernel does when the owner dies
    assert _wait_exit(fake_stub) == -9
    process.wait(timeout=10)


def test_a_released_watchdog_kills_nothing(fake_stub: subprocess.Popen[bytes]) -> None:
    watchdog = lifecycle.Watchdog(fake_stub.pid)
    process = watchdog._process
    watchdog.release()
    assert process is not None and process.poll() == 0
    assert fake_stub.poll() is None
    assert psutil.pid_exists(fake_stub.pid)
