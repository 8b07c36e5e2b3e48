"""mmetools.testing.triton: modes and command lines (unit) and the real bundled server (integration)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from support.testing.tiny_models import write_tiny_model

from mmetools.testing import triton
from mmetools.core.errors import TritonError
from mmetools.testing.source_test import stage_repository, unstage
from mmetools.model.folder import ModelFolder
from mmetools.testing.triton import (
    NATIVE,
    TritonServer,
    assemble_backends,
    find_bundled_triton,
    resolve_mode,
)

# -------------------------------------------------------------------------------------------------
# The real bundled server


def _load_tiny(server: TritonServer, root: Path, name: str = "tiny") -> str:
    model = ModelFolder(write_tiny_model(root, name))
    staged = stage_repository(model, server.repository)
    server.load(staged.ensemble, staged.names)
    return staged.ensemble


@pytest.mark.integration
def test_server_starts_loads_infers_and_leaves_nothing_behind(
    tmp_path: Path, no_triton_leftovers: Path
) -> None:
    with TritonServer() as server:
        assert server.start_seconds is not None and server.start_seconds < 30
        workdir, pid = server.workdir, server.pid
        name = _load_tiny(server, tmp_path)
        outputs = server.infer(name, {"VALUES": np.array([[1.5, -2.0]], dtype=np.float32)})
        assert outputs["DOUBLED"].tolist() == [[3.0, -4.0]]
        assert server.log_excerpt() == []  # a clean run: no errors to show
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert workdir is not None and not workdir.exists()
    assert not any((tmp_path / "tiny").rglob("__pycache__"))  # bytecode went to the staging copy
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))


@pytest.mark.integration
def test_load_failure_names_the_model_and_shows_the_log_line(
    tmp_path: Path, no_triton_leftovers: Path
) -> None:
    model = ModelFolder(write_tiny_model(tmp_path))
    step = model.path / "tiny_double" / "1" / "model.py"
    step.write_text(step.read_text().replace("CRASH_VALUE = 666", "1 / 0"))
    with TritonServer() as server:
        staged = stage_repository(model, server.repository)
        with pytest.raises(TritonError) as error:
            server.load(staged.ensemble, staged.names)
        unstage(staged)
    message = str(error.value)
    assert message.startswith("Triton could not load 'tiny_pipeline': ")
    assert "ZeroDivisionError: division by zero" in message.splitlines()[0]
    assert "\nTriton log:\n" in message
    assert "failed to load 'tiny_double' version 1: Internal: ZeroDivisionError" in message
    assert "Started HTTPService" not in message and "+----" not in message


@pytest.mark.integration
def test_port_taken_before_triton_binds_it_is_retried(no_triton_leftovers: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken, triton.free_port()])
        with mock.patch.object(triton, "free_port", lambda: next(ports)):
            with TritonServer() as server:
                assert server.ports.http != taken
                assert server.request("GET", "/v2/health/ready").status == 200


@pytest.mark.integration
def test_native_mode_runs_the_tritonserver_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_triton_leftovers: Path
) -> None:
    # Stand-in for NVIDIA's image: a `tritonserver` on PATH whose own backends folder is set.
    bundled = find_bundled_triton()
    backends = assemble_backends(bundled, Path(os.environ["MMETOOLS_CACHE_DIR"]), "3.11")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "tritonserver"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export LD_LIBRARY_PATH={bundled.libraries}:{triton.libpython_dir()}\n"
        f'exec {bundled.executable} "$@" --backend-directory={backends}\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert resolve_mode("auto") == NATIVE
    with TritonServer(mode=resolve_mode("auto")) as server:
        assert server._launch is not None and server._launch.argv[0] == str(wrapper)
        name = _load_tiny(server, tmp_path)
        assert server.infer(name, {"VALUES": np.ones((1, 2), np.float32)})["DOUBLED"].sum() == 4


SIGTERM_SCRIPT = """\
import signal, sys
# Ctrl-C raises KeyboardInterrupt, as in a terminal, even when the test runner was started in the
# background (a non-interactive shell's `&` ignores SIGINT, and Python then keeps it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
from mmetools.testing.triton import TritonServer
with TritonServer() as server:
    print(server.pid, server.workdir, flush=True)
    sys.stdin.read()  # until the test sends SIGTERM
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("signum", "exit_codes"),
    [(signal.SIGTERM, {128 + signal.SIGTERM}), (signal.SIGINT, {-signal.SIGINT, 130})],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_signals_stop_the_server_and_remove_its_folder(
    signum: int, exit_codes: set[int], no_triton_leftovers: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(no_triton_leftovers)},
    )
    assert process.stdout is not None
    pid_text, workdir = process.stdout.readline().split()
    process.send_signal(signum)
    assert process.wait(timeout=60) in exit_codes
    assert not Path(f"/proc/{pid_text}").exists()
    assert not Path(workdir).exists()


@pytest.mark.integration
def test_server_dies_with_the_python_process_that_started_it(no_triton_leftovers: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(no_triton_leftovers)},
    )
    assert process.stdout is not None
    pid_text, workdir = process.stdout.readline().split()
    process.kill()  # no cleanup code can run: the kernel ends the server (PR_SET_PDEATHSIG)
    process.wait(timeout=30)
    assert _gone(int(pid_text))
    # The killed parent could not remove its work folder; the temp folder cleaner would.
    shutil.rmtree(workdir)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (gone or a zombie); polls /proc until a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
