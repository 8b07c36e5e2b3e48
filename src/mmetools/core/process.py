"""The one way mmetools runs external commands (argv lists, output captured, shown on failure),
and process hygiene: SIGTERM turned into an exception that runs every cleanup
(``TerminateOnSigterm``)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mmetools.core.errors import ProcessError, Terminated

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompletedCommand:
    argv: tuple[str, ...]
    returncode: int
    output: str


Runner = Callable[[Sequence[str], Path | None, Mapping[str, str] | None], CompletedCommand]


def _default_runner(
    argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
) -> CompletedCommand:
    completed = subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        check=False,
    )
    return CompletedCommand(tuple(argv), completed.returncode, completed.stdout)


_runner: Runner = _default_runner


def set_runner(runner: Runner | None) -> Runner:
    """Replace the runner (tests record commands with this); returns the previous one."""
    global _runner
    previous = _runner
    _runner = runner or _default_runner
    return previous


def find_tool(name: str) -> str | None:
    """A console script installed with mmetools (dvc, uv, venv-pack, conda-pack), else one on
    PATH. Beside the interpreter first: a venv's tools are not on PATH unless it is activated."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    context: str = "",
) -> CompletedCommand:
    """Run ``argv``; raise ProcessError with the command's output when it exits non-zero.

    ``extra_env`` is layered over the current environment; ``env`` replaces it.
    """
    if extra_env is not None:
        env = {**(env if env is not None else os.environ), **extra_env}
    logger.debug("running %s (cwd=%s)", " ".join(argv), cwd)
    try:
        result = _runner(argv, cwd, env)
    except FileNotFoundError as e:
        raise ProcessError(argv, 127, f"{argv[0]}: command not found", context) from e
    if result.returncode != 0:
        raise ProcessError(argv, result.returncode, result.output, context)
    return result


class TerminateOnSigterm:
    """While held, SIGTERM raises :class:`Terminated` in the main thread, so the ``finally``
    blocks that stop servers and remove temp folders run (the default action would end the
    process on the spot and leave them). Reference-counted: the CLI holds it for a whole command,
    a Triton server for its lifetime; the previous handler comes back with the last release."""

    _lock = threading.Lock()
    _users = 0
    _previous: Any = None

    @classmethod
    def acquire(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    return  # someone (pytest, the user) already handles it
                cls._previous = signal.signal(signal.SIGTERM, cls._raise)
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                return
            cls._users -= 1
            if cls._users == 0:
                signal.signal(signal.SIGTERM, cls._previous or signal.SIG_DFL)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """``with sigterm_raises():`` SIGTERM raises :class:`Terminated` inside the block."""
    TerminateOnSigterm.acquire()
    try:
        yield
    finally:
        TerminateOnSigterm.release()
