"""Process hygiene: a server and its stub processes die with the Python process that started
them (PR_SET_PDEATHSIG on the server, a watchdog for its process group), SIGTERM stops servers
through the ``finally`` blocks that own them, and a server start cleans up after dead runs."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mmetools.core.atomic import (
    orphaned_temps,
    owned_temp_folder,
    pid_alive,
    remove_temp,
    write_text_atomically,
)
from mmetools.core.process import TerminateOnSigterm

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Process hygiene


def _kill_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Runs in the child before exec: the server gets SIGKILL when the Python process that
    started it dies for any reason, even SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


# The SIGTERM handling servers hold while they run (one implementation, in core).
_TerminateOnSigterm = TerminateOnSigterm


# ------------------------------------------------------------------------------------------------
# Nothing outlives mmetools: a watchdog per server, and the next start cleans up after dead runs
#
# PR_SET_PDEATHSIG reaches the server only: its python-backend stubs (its children; the setting
# is not inherited across fork) are orphaned when the server is killed, and a stub still starting
# up never checks for its parent, so it runs on (issue 20 #13). A subreaper does not help either:
# when mmetools itself is SIGKILLed, orphans move on to the next subreaper or init. So each
# server gets a watchdog: a tiny process in its own session, reading a pipe only mmetools holds.
# When mmetools dies, however it dies, the kernel closes the pipe and the watchdog kills the
# server's process group (server, stubs, the emulation wrapper), a docker container, and the
# shared-memory regions. A normal stop tells it "released" first. What even the watchdog could
# not handle (the whole session killed at once) the next server start removes: runs whose owner
# pid is dead (the work folder's name carries it) have their recorded group killed and their
# work folder and shared memory removed.

WORKDIR_NAME = "mmetools-triton"  # work folders: <TMPDIR>/.mmetools-triton.tmp-<pid>-<random>
OWNER_RECORD = "owner.json"  # in the work folder: the server's process group and shm prefix
SHM_FOLDER = "/dev/shm"
SHM_PATTERN = re.compile(r"^mmetools_(\d+)_\d+_")  # TritonServer.shm_prefix
TRITON_PROGRAMS = frozenset({"tritonserver", "triton_python_backend_stub"})
_RELEASED = b"released"

_WATCHDOG = """
import glob, os, signal, subprocess, sys
pgid, container, shm_prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if sys.stdin.buffer.read() != b"released":
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    if container:
        subprocess.run(["docker", "rm", "-f", container], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    if shm_prefix:
        for region in glob.glob(os.path.join(sys.argv[4], glob.escape(shm_prefix) + "*")):
            try:
                os.unlink(region)
            except OSError:
                pass
"""


class Watchdog:
    """Kills a server's process group if this process dies before :meth:`release`."""

    def __init__(self, pgid: int, container: str = "", shm_prefix: str = "") -> None:
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), container, shm_prefix,
             SHM_FOLDER],  # fmt: skip
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C or a kill of our process group does not reach it
        )

    def release(self) -> None:
        """The server is stopped: the watchdog exits without killing anything."""
        process, self._process = self._process, None
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.write(_RELEASED)
        with contextlib.suppress(OSError):
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def stop_process_group(
    process: subprocess.Popen[bytes], container: str, shm_prefix: str, timeout: float
) -> None:
    """Stop a server: its docker container, SIGTERM to its process group, SIGKILL to whatever is
    left of it (stubs, a hung server) after ``timeout``, and the shared-memory regions a killed
    python backend could not remove."""
    if container:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["docker", "stop", "--time", "10", container],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout, check=False)  # fmt: skip
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("tritonserver did not stop in %.0f s; killing it", timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for region in Path(SHM_FOLDER).glob(f"{shm_prefix}*"):
        region.unlink(missing_ok=True)


def new_workdir() -> Path:
    """A server's private work folder in TMPDIR, named with this process's pid."""
    return owned_temp_folder(Path(tempfile.gettempdir()) / WORKDIR_NAME)


def record_owner(workdir: Path, pgid: int, shm_prefix: str) -> None:
    record = {"pid": os.getpid(), "pgid": pgid, "shm_prefix": shm_prefix}
    write_text_atomically(workdir / OWNER_RECORD, json.dumps(record) + "\n")


def remove_dead_runs(temp: Path | None = None) -> None:
    """Clean up after servers whose mmetools process died: kill what is left of each one's
    process group (only Triton's programs), remove its shared memory and its work folder."""
    temp = temp if temp is not None else Path(tempfile.gettempdir())
    for folder in orphaned_temps(temp / WORKDIR_NAME):
        try:
            record = json.loads((folder / OWNER_RECORD).read_text(encoding="utf-8"))
            pgid, shm_prefix = int(record["pgid"]), str(record["shm_prefix"])
        except (OSError, ValueError, KeyError, TypeError):
            pgid, shm_prefix = 0, ""
        if pgid > 1:
            kill_triton_group(pgid)
        remove_temp(folder)
    _remove_dead_shm_regions()


def kill_triton_group(pgid: int) -> list[int]:
    """SIGKILL the processes of group ``pgid`` that run Triton's programs; their pids."""
    import psutil

    killed = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != pgid:
                continue
            if not any(Path(arg).name in TRITON_PROGRAMS for arg in process.cmdline()[:8]):
                continue
            process.kill()
            killed.append(process.pid)
        except (psutil.Error, OSError):
            continue
    if killed:
        logger.warning("killed %d Triton process(es) left by a dead run: %s", len(killed), killed)
    return killed


def _remove_dead_shm_regions() -> None:
    try:
        regions = list(Path(SHM_FOLDER).iterdir())
    except OSError:
        return
    for region in regions:
        match = SHM_PATTERN.match(region.name)
        if match is not None and int(match.group(1)) != os.getpid():
            if not pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    region.unlink()
