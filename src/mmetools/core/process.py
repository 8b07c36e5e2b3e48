"""The one way mmetools runs external commands: argv lists, output captured, shown on failure."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmetools.core.errors import ProcessError

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
