"""A killed or terminated command leaves nothing behind (issue 20, #14): SIGTERM runs every cleanup
and exits 143; what a SIGKILL leaves (its pid in the name) the next run removes, and a live run's
folders are kept. The slow steps are fakes, named in each test: a slow env backend and a slow
tarball writer, so the signal lands mid-step without building anything real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmetools import pipeline
from mmetools.build.env import pack
from mmetools.cli import main
from mmetools.core.atomic import owned_temp_path, remove_orphaned_temps
from support.build.envpack_support import IMAGE_2412, make_model
from support.build.package_support import make_demo_model

TESTS_DIR = Path(__file__).resolve().parents[2]

# Runs `mmetools <args>` in a child process with one step replaced by a slow fake that writes
# something first, then touches the marker file and sleeps until the test sends SIGTERM.
SLOW_ENV_BACKEND = """
class SlowFakeBackend:
    name = "venv"

    def identity(self):
        return "slow-fake"

    def build(self, requirements, target, workdir, output, progress, layered=False):
        (workdir / "half-built-env").write_bytes(b"x" * 100_000)
        MARKER.write_text("building")
        time.sleep(120)


import mmetools.build.env.pack as pack
pack.select_backend = lambda settings: SlowFakeBackend()
"""

SLOW_TARBALL_WRITER = """
import mmetools.build.package as package

def slow_write_tarball(members, stream, **options):
    stream.write(b"partial tarball" * 10_000)
    stream.flush()
    MARKER.write_text("packaging")
    time.sleep(120)

package.write_tarball = slow_write_tarball
"""

RUNNER = """
import sys, time
from pathlib import Path
MARKER = Path(sys.argv[1])
{fake}
from mmetools import pipeline
from mmetools.build.env import pack
from mmetools.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_until_marker(fake: str, marker: Path, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER.format(fake=textwrap.dedent(fake)), str(marker), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path]),
            "MMETOOLS_CACHE_DIR": str(cwd / "cache"),
        },
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the command ended before the slow step (rc {process.returncode}):\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the slow step was never reached")
        time.sleep(0.05)
    return process


def _terminate(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, err


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process that runs for the whole test."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


# -------------------------------------------------------------------------------------------------
# SIGTERM mid-step: exit 143, every temp removed


def test_sigterm_mid_env_build_exits_143_and_removes_the_build_folder_slow_fake_backend(
    tmp_path: Path,
) -> None:
    make_model(tmp_path)
    (tmp_path / "mmetools.toml").write_text(
        f'[env]\nbackend = "venv"\n[target]\nimage = "{IMAGE_2412}"\n'
    )
    envs = tmp_path / "cache" / "envs"
    process = _run_until_marker(
        SLOW_ENV_BACKEND, tmp_path / "marker", ["env", "models/demo"], tmp_path
    )
    assert list(envs.iterdir()) != []  # the build folder exists while the env builds
    returncode, err = _terminate(process)
    assert returncode == 143
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in envs.iterdir()) == []  # no half entry either


def test_sigterm_mid_package_exits_143_and_removes_the_partial_tarball_slow_fake_writer(
    tmp_path: Path,
) -> None:
    make_demo_model(tmp_path)
    out = tmp_path / "out"
    args = ["build", "models/demo", "--out", str(out), "--no-env", "--skip", "test"]
    process = _run_until_marker(SLOW_TARBALL_WRITER, tmp_path / "marker", args, tmp_path)
    assert any(out.rglob("*.tar.gz*"))  # the partial tarball, in the staging folder
    returncode, err = _terminate(process)
    assert returncode == 143
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []


def test_sigterm_mid_package_command_removes_its_partial_tarball_slow_fake_writer(
    tmp_path: Path,
) -> None:
    make_demo_model(tmp_path)
    out = tmp_path / "out"
    args = ["package", "models/demo", "--out", str(out), "--no-env"]
    process = _run_until_marker(SLOW_TARBALL_WRITER, tmp_path / "marker", args, tmp_path)
    assert list(out.iterdir()) != []  # the partial tarball
    returncode, _ = _terminate(process)
    assert returncode == 143
    assert sorted(p.name for p in out.iterdir()) == []


# -------------------------------------------------------------------------------------------------
# What a SIGKILL leaves: removed by the next run when its process is dead, kept while it lives


def _owned_by(final: Path, pid: int, folder: bool = True) -> Path:
    path = owned_temp_path(final)
    path = path.with_name(path.name.replace(f"-{os.getpid()}-", f"-{pid}-"))
    if folder:
        path.mkdir(parents=True)
        (path / "half").write_bytes(b"x" * 1000)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    return path


class _InstantFakeBackend:
    """Builds an empty env archive at once (this test is about the cache folder)."""

    name = "venv"

    def identity(self) -> str:
        return "instant-fake"

    def build(self, requirements: Path, target: object, workdir: Path, output: Path,
              progress: object, layered: bool = False) -> None:  # fmt: skip
        with tarfile.open(output, "w:gz"):
            pass


def test_next_env_run_removes_a_dead_runs_build_folder_and_keeps_a_live_ones_fake_backend(
    tmp_path: Path, dead_pid: int, live_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_model(tmp_path)
    (tmp_path / "mmetools.toml").write_text(f'[target]\nimage = "{IMAGE_2412}"\n')
    envs = tmp_path / "cache" / "envs"
    dead = _owned_by(envs / "build", dead_pid)
    live = _owned_by(envs / "build", live_pid)
    monkeypatch.setenv("MMETOOLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pack, "select_backend", lambda settings: _InstantFakeBackend())
    main(["env", "models/demo"])
    assert not dead.exists()
    assert live.is_dir()


def test_next_build_removes_a_dead_runs_staging_folder_and_keeps_a_live_ones_no_artifact_test(
    tmp_path: Path, dead_pid: int, live_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    dead = _owned_by(out / "build", dead_pid)
    live = _owned_by(out / "build", live_pid)
    make_demo_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "_artifact_step", lambda *args: [])  # no Triton in this tier
    main(["build", "models/demo", "--out", str(out), "--no-env", "--skip", "test"])
    assert not dead.exists()
    assert live.is_dir()


def test_next_package_removes_a_dead_runs_partial_tarball_and_keeps_a_live_ones(
    tmp_path: Path, dead_pid: int, live_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    final = out / "demo_3.tar.gz"
    dead = _owned_by(final, dead_pid, folder=False)
    live = _owned_by(final, live_pid, folder=False)
    make_demo_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["package", "models/demo", "--out", str(out), "--no-env"]) == 0
    assert not dead.exists()
    assert live.is_file()
    assert final.is_file()


def test_orphaned_temps_are_removed_files_and_folders_alike(
    tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    final = tmp_path / "thing"
    removed = [_owned_by(final, dead_pid), _owned_by(final, dead_pid, folder=False)]
    kept = [_owned_by(final, live_pid), _owned_by(final, os.getpid(), folder=False)]
    other = _owned_by(tmp_path / "other", dead_pid)  # another name's temp is not touched
    remove_orphaned_temps(final)
    assert [p.exists() for p in removed] == [False, False]
    assert [p.exists() for p in kept] == [True, True]
    assert other.exists()
