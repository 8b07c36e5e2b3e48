"""Local Python interpreters of a given minor version: to build a target's envs and to stand in
for the target image's Python when an artifact is served here.

Looked for, in order: ``python3.X`` on PATH, uv's ``uv python find 3.X`` (uv-managed or system),
and pyenv's versions folder (``$PYENV_ROOT`` or ``~/.pyenv``). Each candidate is run once to read
its real version and prefix, so a pyenv shim for a version that is not active is skipped.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mmetools.core import process
from mmetools.core.errors import EnvPackError, MmetoolsError

logger = logging.getLogger(__name__)

_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix)"


@dataclass(frozen=True)
class LocalPython:
    executable: Path  # <prefix>/bin/python3.X
    prefix: Path  # sys.base_prefix: holds bin/python3.X and lib/python3.X (the stdlib)
    version: str  # "3.12"

    @property
    def stdlib(self) -> Path:
        return self.prefix / "lib" / f"python{self.version}"


def _candidates(version: str) -> list[str]:
    found: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    uv = process.find_tool("uv")
    if uv:
        try:
            found.append(
                process.run(
                    [uv, "python", "find", "--no-project", version], context="uv"
                ).output.strip()
            )
        except MmetoolsError:
            pass
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found.extend(
        str(p) for p in sorted((root / "versions").glob(f"{version}.*/bin/python{version}"))
    )
    return [c for c in found if c]


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> LocalPython:
    """A local interpreter of ``version`` ("3.12") with its prefix laid out as bin/ + lib/."""
    tried: list[str] = []
    for candidate in _candidates(version):
        try:
            lines = process.run([candidate, "-c", _PROBE], context=candidate).output.split("\n")
        except MmetoolsError:
            tried.append(f"{candidate} (does not run)")
            continue
        found, prefix = lines[0].strip(), Path(lines[1].strip()) if len(lines) > 1 else Path()
        executable = prefix / "bin" / f"python{version}"
        if found != version:
            tried.append(f"{candidate} (is Python {found})")
        elif not executable.is_file() or not (prefix / "lib" / f"python{version}").is_dir():
            tried.append(f"{candidate} (no bin/python{version} + lib/python{version} in {prefix})")
        else:
            logger.debug("Python %s: %s", version, executable)
            return LocalPython(executable, prefix, version)
    detail = f" (tried: {'; '.join(tried)})" if tried else ""
    raise EnvPackError(
        f"no local Python {version} found on PATH, through uv or in pyenv's versions{detail}; the "
        f"serving target needs it to build and test its envs: install one with "
        f"`uv python install {version}` or `pyenv install {version}`, or choose another [target]"
    )
