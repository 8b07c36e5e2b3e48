"""Packed Python environments for a model's Python steps: ``<step>/python_env.tar.gz``.

Triton's python backend unpacks the archive named by the step's ``EXECUTION_ENV_PATH`` parameter
and runs the step with that env's interpreter and packages. The env is built from the model's
requirements.txt by one of two backends behind the ``EnvBackend`` interface:

- ``CondaPackBackend`` (production): ``conda``/``mamba create --copy`` at the configured Python,
  requirements installed with pip, packed by ``conda-pack``. The archive carries the interpreter.
- ``VenvPackBackend``: a venv of the configured Python (``python3.X`` on PATH, or ``uv venv``),
  requirements installed with ``uv pip`` (or pip), packed by ``venv-pack``. A venv does NOT carry
  its interpreter: the target needs the same Python at the same path (fine for the local Triton).

Built archives are cached under ``<cache_dir>/envs/<hash>/`` keyed by a hash of the normalized
requirements, the Python version, the platform and the backend, so an unchanged env is never
rebuilt; each step then gets a copy (a copy, not a hard link: the packager refuses hard links).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mmetools import process
from mmetools.atomic import KEEP_MODE, write_text_atomically
from mmetools.errors import EnvPackError, ProcessError
from mmetools.model_config import ModelConfig, parse_config, read_config_file
from mmetools.model_folder import (
    ENV_ARCHIVE,
    EXECUTION_ENV_KEY,
    EXECUTION_ENV_VALUE,
    ModelFolder,
    execution_env_problem,
)
from mmetools.settings import Settings

logger = logging.getLogger(__name__)

# Bump when the build recipe changes in a way that changes the env: it invalidates every cache entry.
RECIPE_VERSION = 1
# Beside each step's copy: which env it is, so an unchanged copy is not rewritten.
STEP_RECORD = ".python_env.json"
CACHE_SUBDIR = "envs"
CACHE_RECORD = "env.json"

_PYTHON_VERSION = re.compile(r"^3\.[0-9]+$")
# pip requirement-file options whose content lives elsewhere: the cache hash could not see a change.
_UNHASHABLE_OPTIONS = re.compile(
    r"^(-r|--requirement|-c|--constraint|-e|--editable)(\s|=|$)", re.IGNORECASE
)
_COMMENT = re.compile(r"(^|\s)#.*$")
_PROBE_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PackedEnv:
    """The env of one model: the cached archive and the step folders that got a copy."""

    path: Path
    env_hash: str
    backend: str
    python_version: str
    cached: bool  # True when the archive came from the cache (nothing was built)
    steps: tuple[Path, ...] = ()


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
        python_version: str,
        workdir: Path,
        output: Path,
        progress: Progress,
    ) -> None: ...


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
            f"but Python {python_version} was asked for (settings env.python_version)"
        )


@dataclass(frozen=True)
class CondaPackBackend:
    """conda/mamba env at the configured Python + pip requirements, packed by conda-pack."""

    conda: str  # the conda or mamba executable
    name: str = "conda"

    def identity(self) -> str:
        return "conda"

    def build(
        self,
        requirements: Path,
        python_version: str,
        workdir: Path,
        output: Path,
        progress: Progress,
    ) -> None:
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
             "-r", str(requirements)],
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
    """A venv of the configured Python + requirements, packed by venv-pack.

    venv-pack's constraints (read from its source, 0.2.0): the folder must be a venv with a
    pyvenv.cfg whose ``home`` line comes first and exactly one lib/pythonX.Y; no editable installs
    (``.pth`` files pointing outside the env are refused); the interpreter is NOT packed, only
    linked, so the base Python must exist at the same path where the env is unpacked.
    """

    python: str | None  # python3.X on PATH, or None to let uv find (or fetch) that version
    uv: str | None
    name: str = "venv"

    def identity(self) -> str:
        # The packed venv links to its base interpreter: a different interpreter is a different env.
        base = os.path.realpath(self.python) if self.python else "uv-managed"
        return f"venv:{base}"

    def build(
        self,
        requirements: Path,
        python_version: str,
        workdir: Path,
        output: Path,
        progress: Progress,
    ) -> None:
        prefix = workdir / "env"
        env_python = prefix / "bin" / "python"
        progress(f"creating a venv with Python {python_version}")
        if self.python is not None:
            # --without-pip when uv installs the requirements: Debian's python3.X may lack ensurepip.
            argv = [self.python, "-m", "venv", *(["--without-pip"] if self.uv else [])]
            process.run([*argv, str(prefix)], context=f"{self.python} -m venv")
        elif self.uv is not None:
            process.run(
                [self.uv, "venv", "--quiet", "--python", python_version, str(prefix)],
                context=f"uv venv --python {python_version}",
            )
        else:
            raise EnvPackError(
                f"no python{python_version} on PATH and no uv to provide one: install Python "
                f"{python_version} or uv, or change settings env.python_version"
            )
        _check_env_python(env_python, python_version, self.name)
        progress(f"installing {requirements.name}")
        if self.uv is not None:
            install = [self.uv, "pip", "install", "--quiet", "--python", str(env_python)]
        else:
            install = [str(env_python), "-m", "pip", "install", "--no-input",
                       "--disable-pip-version-check"]  # fmt: skip
        process.run([*install, "-r", str(requirements)], context=f"installing {requirements}")
        progress("packing with venv-pack")
        process.run(
            [sys.executable, "-m", "venv_pack", "--prefix", str(prefix), "--output", str(output),
             "--quiet"],
            context="venv-pack",
        )  # fmt: skip


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
        version = settings.env.python_version
        return VenvPackBackend(python=shutil.which(f"python{version}"), uv=process.find_tool("uv"))
    raise EnvPackError(
        f'settings env.backend must be "auto", "conda" or "venv", got "{settings.env.backend}"'
    )


def check_python_target(settings: Settings) -> str:
    """The env's Python version, refused unless it equals the Triton stub's."""
    version = settings.env.python_version
    stub = settings.env.triton_stub_python
    if not _PYTHON_VERSION.match(version):
        raise EnvPackError(f'settings env.python_version must look like "3.12", got "{version}"')
    if version != stub:
        raise EnvPackError(
            f"settings env.python_version is {version} but env.triton_stub_python is {stub}: "
            f"the packed env's Python must equal the Python of Triton's python-backend stub "
            f"(3.12 for Triton >= 24.11, 3.10 before). Set both in mmetools.toml [env]."
        )
    return version


def normalized_requirements(path: Path, model_name: str) -> str:
    """requirements.txt without comments, blank lines or ordering, for the cache hash."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise EnvPackError(
            f"{path}: missing; model '{model_name}' has Python steps and their env is built "
            f"from this file (list at least numpy, which Triton's python backend imports)"
        ) from e
    except UnicodeDecodeError as e:
        raise EnvPackError(f"{path}: not UTF-8 text") from e
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = " ".join(_COMMENT.sub("", raw).split())
        if not line:
            continue
        if _UNHASHABLE_OPTIONS.match(line):
            raise EnvPackError(
                f"{path}:{number}: '{line}' is not supported in a model's requirements: list "
                f"the packages themselves (included files and editable installs cannot be "
                f"cached or packed)"
            )
        lines.append(line)
    return "".join(f"{line}\n" for line in sorted(lines))


def platform_tag() -> str:
    libc, libc_version = platform.libc_ver()
    return f"{sysconfig.get_platform()}-{libc or 'unknown'}{libc_version}"


def env_hash(requirements: str, python_version: str, backend: EnvBackend) -> str:
    key = {
        "recipe": RECIPE_VERSION,
        "requirements": requirements,
        "python": python_version,
        "platform": platform_tag(),
        "backend": backend.identity(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_no_hard_links(archive: Path, context: str) -> None:
    """Triton's python backend fails on hard-link members ("Hard-link target ... does not exist")."""
    try:
        with tarfile.open(archive, "r|gz") as tar:
            links = [member.name for member in tar if member.islnk()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise EnvPackError(
            f"{context}: the packed env {archive} is not a valid .tar.gz: {e}"
        ) from e
    if links:
        shown = ", ".join(links[:10]) + (f" and {len(links) - 10} more" if len(links) > 10 else "")
        raise EnvPackError(
            f"{context}: the packed env holds hard links, which Triton cannot unpack: {shown}"
        )


def _build_into_cache(
    backend: EnvBackend,
    requirements: Path,
    python_version: str,
    digest: str,
    cache_entry: Path,
    model_name: str,
    progress: Progress,
) -> None:
    """Build in a temp folder beside the cache entry, then rename it into place atomically."""
    envs_dir = cache_entry.parent
    envs_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".build-", dir=envs_dir))
    try:
        staged = workdir / "entry"
        staged.mkdir()
        archive = staged / ENV_ARCHIVE
        try:
            backend.build(requirements, python_version, workdir, archive, progress)
        except ProcessError as e:
            raise EnvPackError(
                f"model '{model_name}': building the {backend.name} env from {requirements} "
                f"failed: {e}"
            ) from e
        if not archive.is_file():
            raise EnvPackError(f"model '{model_name}': {backend.name} produced no {archive.name}")
        _check_no_hard_links(archive, f"model '{model_name}'")
        record = {
            "env_hash": digest,
            "backend": backend.name,
            "backend_identity": backend.identity(),
            "python_version": python_version,
            "platform": platform_tag(),
            "requirements": normalized_requirements(requirements, model_name),
            "sha256": _file_sha256(archive),
            "size": archive.stat().st_size,
        }
        (staged / CACHE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(staged, cache_entry)
        except OSError:
            # Another build of the same env won the race: its entry is as good as ours.
            if not (cache_entry / ENV_ARCHIVE).is_file():
                raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def place_in_step(cached_archive: Path, digest: str, step_dir: Path) -> bool:
    """Copy the cached archive to ``<step>/python_env.tar.gz``; False when it was already there."""
    destination = step_dir / ENV_ARCHIVE
    record_path = step_dir / STEP_RECORD
    cache_record = _read_json(cached_archive.parent / CACHE_RECORD) or {}
    sha256 = cache_record.get("sha256") or _file_sha256(cached_archive)
    record = _read_json(record_path)
    if record is not None and destination.is_file() and not destination.is_symlink():
        stat = destination.stat()
        if (
            record.get("env_hash") == digest
            and record.get("sha256") == sha256
            and record.get("size") == stat.st_size
            and record.get("mtime_ns") == stat.st_mtime_ns
        ):
            return False
    temporary = step_dir / f".{ENV_ARCHIVE}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(cached_archive, temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    stat = destination.stat()
    new_record = {"env_hash": digest, "sha256": sha256, "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns}  # fmt: skip
    write_text_atomically(record_path, json.dumps(new_record, indent=2) + "\n")
    return True


def check_execution_env_path(config: ModelConfig, config_path: Path) -> None:
    """Refuse an EXECUTION_ENV_PATH that does not name the step's own packed env."""
    if EXECUTION_ENV_KEY not in config.parameters:
        return
    value = str(config.parameters[EXECUTION_ENV_KEY].string_value)
    problem = execution_env_problem(value)
    if problem:
        raise EnvPackError(f"{config_path}: parameter {EXECUTION_ENV_KEY} '{value}' {problem}")


_PARAMETER_BLOCK = (
    "parameters: {\n"
    f'  key: "{EXECUTION_ENV_KEY}"\n'
    f'  value: {{ string_value: "{EXECUTION_ENV_VALUE}" }}\n'
    "}\n"
)


def ensure_execution_env_path(config_path: Path) -> bool:
    """Make the step's config point EXECUTION_ENV_PATH at its packed env; True if it changed.

    A missing parameter is appended as text, so the user's formatting and comments stay; the
    result is re-parsed and must equal the old config plus that one parameter.
    """
    read = read_config_file(config_path)
    text, config = read.text, read.config
    if EXECUTION_ENV_KEY in config.parameters:
        check_execution_env_path(config, config_path)
        return False
    separator = "" if not text or text.endswith("\n") else "\n"
    new_text = f"{text}{separator}\n{_PARAMETER_BLOCK}"
    new_config = parse_config(new_text, config_path)
    expected = ModelConfig()
    expected.CopyFrom(config)
    expected.parameters[EXECUTION_ENV_KEY].string_value = EXECUTION_ENV_VALUE
    if new_config != expected:  # pragma: no cover - appending a map entry cannot change the rest
        raise EnvPackError(f"{config_path}: adding {EXECUTION_ENV_KEY} changed other fields")
    write_text_atomically(config_path, new_text, KEEP_MODE)
    logger.info("%s: added parameter %s", config_path, EXECUTION_ENV_KEY)
    return True


def pack_env(
    model: ModelFolder,
    settings: Settings,
    *,
    progress: Progress | None = None,
    backend: EnvBackend | None = None,
) -> PackedEnv | None:
    """Build (or reuse from the cache) the model's env and copy it into every Python step.

    Returns None when the model has no Python steps. Steps' configs get EXECUTION_ENV_PATH.
    """

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    steps = sorted(model.python_steps(), key=lambda step: step.name)
    if not steps:
        logger.info("%s: no Python steps, no env to pack", model.name)
        return None
    python_version = check_python_target(settings)
    requirements = normalized_requirements(model.requirements_file, model.name)
    chosen = backend if backend is not None else select_backend(settings)
    # Check every config before building anything: a bad value should not cost a 5-minute build.
    for step in steps:
        check_execution_env_path(step.config, step.config_path)
    digest = env_hash(requirements, python_version, chosen)
    cache_entry = settings.cache_dir / CACHE_SUBDIR / digest
    cached_archive = cache_entry / ENV_ARCHIVE
    cached = cached_archive.is_file()
    if cached:
        report(f"env {digest[:12]} found in the cache ({chosen.name}, Python {python_version})")
    else:
        report(f"building env {digest[:12]} ({chosen.name}, Python {python_version})")
        try:
            _build_into_cache(
                chosen,
                model.requirements_file,
                python_version,
                digest,
                cache_entry,
                model.name,
                report,
            )
        except OSError as e:
            raise EnvPackError(
                f"model '{model.name}': cannot store the env in the cache {cache_entry.parent}: "
                f"{e.strerror or e}"
            ) from e
    placed: list[Path] = []
    for step in steps:
        try:
            if place_in_step(cached_archive, digest, step.path):
                report(f"copied the env into {step.name}/{ENV_ARCHIVE}")
            ensure_execution_env_path(step.config_path)
        except OSError as e:
            raise EnvPackError(
                f"model '{model.name}': cannot write {step.path / ENV_ARCHIVE}: {e.strerror or e}"
            ) from e
        placed.append(step.path / ENV_ARCHIVE)
    return PackedEnv(
        path=cached_archive,
        env_hash=digest,
        backend=chosen.name,
        python_version=python_version,
        cached=cached,
        steps=tuple(placed),
    )
