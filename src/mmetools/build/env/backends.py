"""The two ways an env is built for the serving target, behind the ``EnvBackend`` interface.

- ``CondaPackBackend``: ``conda``/``mamba create --copy`` at the target's Python, requirements
  installed with pip (wheels only), packed by ``conda-pack``. The archive carries the interpreter.
- ``VenvPackBackend``: ``uv venv`` with a local Python of the target's minor version, ``uv pip
  install --python-platform <target manylinux>``, ``venv-pack --python-prefix <target prefix>``,
  then normalised (:mod:`mmetools.build.env.normalize`) into a reproducible archive. A venv does
  NOT carry its interpreter: the image's Python (``interpreter_path``) serves it.

``select_backend`` picks one from the settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mmetools.build.env.bytecode import compile_bytecode
from mmetools.build.env.normalize import normalize_env_archive
from mmetools.core import process
from mmetools.core.errors import EnvPackError
from mmetools.core.interpreters import LocalPython, find_python
from mmetools.core.settings import Settings
from mmetools.core.targets import ServingTarget

logger = logging.getLogger(__name__)

_PROBE_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"

Progress = Callable[[str], None]
# In the build folder: bytes each slim rule dropped (recorded in the cache entry's record).
SLIM_REPORT = "slimmed.json"


class EnvBackend(Protocol):
    """Builds ``output`` (a .tar.gz of an env with ``requirements`` installed) inside ``workdir``."""

    @property
    def name(self) -> str:
        """Short backend name recorded in manifests: "conda" or "venv"."""
        ...

    def identity(self) -> str:
        """What besides requirements/python/platform makes two envs differ (part of the hash)."""
        ...

    def build(
        self,
        requirements: Path,
        target: ServingTarget,
        workdir: Path,
        output: Path,
        progress: Progress,
        *,
        layered: bool = False,
    ) -> None:
        """``layered``: the requirements leave packages to the image's site-packages, which the
        env must then see (only the venv backend is asked to)."""
        ...


def _tool_beside_python(name: str) -> str:
    """A console script installed with mmetools (conda-pack, venv-pack), else one on PATH."""
    return process.find_tool(name) or name


def _check_env_python(env_python: Path, python_version: str, backend: str) -> None:
    found = process.run(
        [str(env_python), "-c", _PROBE_VERSION], context=f"{env_python} (probing its version)"
    ).output.strip()
    if found != python_version:
        raise EnvPackError(
            f"the {backend} backend created an env with Python {found or '?'} at {env_python}, "
            f"but Python {python_version} was asked for (the serving target's Python)"
        )


@dataclass(frozen=True)
class CondaPackBackend:
    """conda/mamba env at the target's Python + pip requirements, packed by conda-pack."""

    conda: str  # the conda or mamba executable
    name: str = "conda"

    def identity(self) -> str:
        return "conda"

    def build(
        self,
        requirements: Path,
        target: ServingTarget,
        workdir: Path,
        output: Path,
        progress: Progress,
        *,
        layered: bool = False,
    ) -> None:
        python_version = target.python_version
        prefix = workdir / "env"
        progress(f"creating a conda env with Python {python_version}")
        # --copy: no hard links into the package cache. Triton's python backend cannot unpack
        # archives holding hard links (server issue #8356), and conda-pack keeps them.
        process.run(
            [self.conda, "create", "--yes", "--quiet", "--copy", "--prefix", str(prefix),
             f"python={python_version}", "pip"],
            context=f"{Path(self.conda).name} create (Python {python_version})",
        )  # fmt: skip
        env_python = prefix / "bin" / "python"
        _check_env_python(env_python, python_version, self.name)
        progress(f"installing {requirements.name}")
        process.run(
            [str(env_python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
             "--only-binary=:all:", "-r", str(requirements)],
            context=f"pip install -r {requirements}",
        )  # fmt: skip
        progress("packing with conda-pack")
        process.run(
            [_tool_beside_python("conda-pack"), "--prefix", str(prefix), "--output", str(output),
             "--ignore-missing-files", "--quiet"],
            context="conda-pack",
        )  # fmt: skip


@dataclass(frozen=True)
class VenvPackBackend:
    """A venv of the target's Python + the locked requirements for the target's platform, packed
    by venv-pack with ``--python-prefix`` (the image's prefix), then normalised (see
    :func:`normalize_env_archive`) so the archive is byte-identical from any machine.

    venv-pack's constraints (read from its source, 0.2.0): the folder must be a venv with a
    pyvenv.cfg whose ``home`` line comes first and exactly one lib/pythonX.Y; no editable installs
    (``.pth`` files pointing outside the env are refused); the interpreter is NOT packed, only
    linked: the target image provides it at ``interpreter_path``.
    """

    python: LocalPython | None  # a local interpreter of the target's minor version
    uv: str | None
    name: str = "venv"

    def identity(self) -> str:
        # Not the local interpreter's path: the env links to the *target's* interpreter, and the
        # archive is normalised, so any local Python of the same minor version gives these bytes.
        return "venv-pack+uv"

    def build(
        self,
        requirements: Path,
        target: ServingTarget,
        workdir: Path,
        output: Path,
        progress: Progress,
        *,
        layered: bool = False,
    ) -> None:
        python = self.python or find_python(target.python_version)
        if self.uv is None:
            raise EnvPackError(
                "the venv backend needs uv (a dependency of mmetools: run ci/bootstrap)"
            )
        prefix = workdir / "env"
        env_python = prefix / "bin" / "python"
        progress(f"creating a venv with Python {target.python_version}")
        process.run(
            [self.uv, "venv", "--quiet", "--no-config", "--python", str(python.executable),
             str(prefix)],
            context=f"uv venv --python {python.executable}",
        )  # fmt: skip
        _check_env_python(env_python, target.python_version, self.name)
        progress(f"installing {requirements.name} for {target.manylinux_platform}")
        # Wheels for the image's platform only (manylinux tag within its glibc), never built here,
        # copied (no hard links into uv's cache), no bytecode (it would record build paths).
        hashes = ["--require-hashes"] if "--hash=" in requirements.read_text("utf-8") else []
        # Layered: the lock is a whole resolution with the image's packages taken out; --no-deps
        # keeps the installer from packing them again as dependencies.
        no_deps = ["--no-deps"] if layered else []
        process.run(
            [self.uv, "pip", "install", "--quiet", "--no-config", "--python", str(env_python),
             "--python-platform", target.manylinux_platform,
             "--python-version", target.python_version, "--no-build", "--link-mode", "copy",
             *hashes, *no_deps, "-r", str(requirements)],
            context=f"installing {requirements}",
        )  # fmt: skip
        progress(f"compiling hash-based bytecode for Python {target.python_version}")
        compile_bytecode(python.executable, prefix, target)
        progress("packing with venv-pack")
        raw = workdir / "venv-pack.tar"
        process.run(
            [sys.executable, "-m", "venv_pack", "--prefix", str(prefix), "--output", str(raw),
             "--format", "tar", "--python-prefix", target.python_prefix, "--quiet"],
            context="venv-pack",
        )  # fmt: skip
        forbidden = {str(workdir), str(workdir.resolve()), str(python.prefix)}
        slimmed = normalize_env_archive(raw, output, target, forbidden, layered=layered)
        (workdir / SLIM_REPORT).write_text(json.dumps(slimmed, sort_keys=True), encoding="utf-8")
        saved = sum(slimmed.values())
        progress(
            f"slimmed the env by {saved} bytes ("
            + ", ".join(f"{rule}: {size}" for rule, size in sorted(slimmed.items()))
            + ")"
        )


def select_backend(settings: Settings) -> EnvBackend:
    """The backend settings.env.backend names ("auto": conda when conda or mamba is on PATH)."""
    choice = settings.env.backend
    conda = shutil.which("mamba") or shutil.which("conda")
    if choice == "auto":
        choice = "conda" if conda else "venv"
    if choice == "conda":
        if conda is None:
            raise EnvPackError(
                'settings env.backend is "conda" but neither conda nor mamba is on PATH; '
                'install one or set env.backend = "venv" (MMETOOLS_ENV_BACKEND=venv)'
            )
        return CondaPackBackend(conda)
    if choice == "venv":
        return VenvPackBackend(python=None, uv=process.find_tool("uv"))
    raise EnvPackError(
        f'settings env.backend must be "auto", "conda" or "venv", got "{settings.env.backend}"'
    )
