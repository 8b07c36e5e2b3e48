"""Packed Python environments for a model's Python steps: ``<step>/python_env.tar.gz``.

Triton's python backend unpacks the archive named by the step's ``EXECUTION_ENV_PATH`` parameter
and runs the step with that env's packages. Envs are built for the serving target
(:mod:`mmetools.core.targets`): its Python minor version, its platform (wheels within its glibc) and its
interpreter path, from the model's lock for that Python (:mod:`mmetools.build.lock`), else its
requirements.txt. Two backends behind the ``EnvBackend`` interface:

- ``CondaPackBackend``: ``conda``/``mamba create --copy`` at the target's Python, requirements
  installed with pip (wheels only), packed by ``conda-pack``. The archive carries the interpreter.
- ``VenvPackBackend``: ``uv venv`` with a local Python of the target's minor version, ``uv pip
  install --python-platform <target manylinux>``, ``venv-pack --python-prefix <target prefix>``,
  then normalised into a reproducible archive. A venv does NOT carry its interpreter: the image's
  Python (``interpreter_path``) serves it, and ``mmetools test --artifact`` emulates that.

Built archives are cached under ``<cache_dir>/envs/<hash>/`` keyed by the lock (or normalised
requirements), the target's Python, interpreter path and platform, and the recipe; never by a
path of this machine. Each step then gets a copy (not a hard link: Triton refuses hard links).
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import posixpath
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

from mmetools.core import process
from mmetools.core.atomic import KEEP_MODE, write_text_atomically
from mmetools.core.errors import EnvPackError, ProcessError
from mmetools.core.interpreters import LocalPython, find_python
from mmetools.model.config import ModelConfig, parse_config, read_config_file
from mmetools.model.folder import (
    ENV_ARCHIVE,
    EXECUTION_ENV_KEY,
    EXECUTION_ENV_VALUE,
    ModelFolder,
    execution_env_problem,
)
from mmetools.core.settings import Settings
from mmetools.core.targets import ServingTarget

logger = logging.getLogger(__name__)

# Bump when the build recipe changes in a way that changes the env: it invalidates every cache entry.
RECIPE_VERSION = 3
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
        target: ServingTarget,
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
        process.run(
            [self.uv, "pip", "install", "--quiet", "--no-config", "--python", str(env_python),
             "--python-platform", target.manylinux_platform,
             "--python-version", target.python_version, "--no-build", "--link-mode", "copy",
             *hashes, "-r", str(requirements)],
            context=f"installing {requirements}",
        )  # fmt: skip
        progress("packing with venv-pack")
        raw = workdir / "venv-pack.tar"
        process.run(
            [sys.executable, "-m", "venv_pack", "--prefix", str(prefix), "--output", str(raw),
             "--format", "tar", "--python-prefix", target.python_prefix, "--quiet"],
            context="venv-pack",
        )  # fmt: skip
        forbidden = {str(workdir), str(workdir.resolve()), str(python.prefix)}
        normalize_env_archive(raw, output, target, forbidden)


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


# -- deterministic env archives ----------------------------------------------------------------

# Activation scripts uv writes with the build folder's absolute path in them; venv-pack adds its
# own relocatable bin/activate and bin/deactivate.
_DROPPED_BIN = re.compile(r"^bin/(activate\..+|activate_this\.py|deactivate\.bat|pydoc\.bat)$")
ENV_FILE_MODE = 0o644
ENV_EXEC_MODE = 0o755


def _dropped(name: str) -> bool:
    parts = name.split("/")
    return (
        "__pycache__" in parts
        or name.endswith((".pyc", ".pyo"))
        or _DROPPED_BIN.match(name) is not None
    )


def _pyvenv_cfg(target: ServingTarget) -> bytes:
    # Only what the image's Python reads: where its interpreter lives. No build command, no
    # local patch version, no tool versions.
    home = target.interpreter_path.rsplit("/", 1)[0]
    return (
        f"home = {home}\ninclude-system-site-packages = false\n"
        f"version = {target.python_version}\n"
    ).encode()


def normalize_env_archive(
    raw: Path, output: Path, target: ServingTarget, forbidden: set[str]
) -> None:
    """Rewrite venv-pack's tar as a reproducible .tar.gz.

    Members sorted, mtime 0, uid/gid 0, no owner names, mode 0755 for folders and executables
    else 0644, hard links stored as files, no bytecode, a canonical pyvenv.cfg, ``bin/python``
    a link to the target's interpreter; gzip header without name or time. Any file that still
    names a folder of the build machine (``forbidden``) is an EnvPackError naming it.
    """
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(raw, "r:") as source:
        for member in source:
            name = posixpath.normpath(member.name.removeprefix("./"))
            if name in (".", "") or _dropped(name):
                continue
            info = tarfile.TarInfo(name)
            data: bytes | None = None
            if member.isdir():
                info.type, info.mode = tarfile.DIRTYPE, ENV_EXEC_MODE
            elif member.issym():
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, member.linkname
            elif member.isfile() or member.islnk():
                extracted = source.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                info.type = tarfile.REGTYPE
                info.mode = ENV_EXEC_MODE if member.mode & 0o111 else ENV_FILE_MODE
            else:
                continue
            entries[name] = (info, data)
    entries["pyvenv.cfg"] = (_file_info("pyvenv.cfg", ENV_FILE_MODE), _pyvenv_cfg(target))
    # The env's interpreter is the image's: bin/python -> interpreter_path, the others -> python.
    for link in ("python", "python3", f"python{target.python_version}"):
        info = tarfile.TarInfo(f"bin/{link}")
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = target.interpreter_path if link == "python" else "python"
        entries[info.name] = (info, None)
    _refresh_records(entries)
    leaks = sorted(
        name
        for name, (_, data) in entries.items()
        if data is not None and any(path.encode() in data for path in forbidden if len(path) > 1)
    )
    leaks += sorted(
        f"{name} -> {info.linkname}"
        for name, (info, _) in entries.items()
        if info.issym()
        and any(info.linkname.startswith(path) for path in forbidden if len(path) > 1)
    )
    if leaks:
        raise EnvPackError(
            f"the packed env still names a folder of the build machine in: {', '.join(leaks[:10])}"
            f"{f' and {len(leaks) - 10} more' if len(leaks) > 10 else ''}"
        )
    with output.open("wb") as stream:
        with gzip.GzipFile(filename="", mode="wb", fileobj=stream, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(entries, key=lambda n: n.split("/")):
                    info, data = entries[name]
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    if data is None:
                        tar.addfile(info)
                    else:
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))


def _refresh_records(entries: dict[str, tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Make every ``*.dist-info/RECORD`` describe the files as packed: venv-pack rewrote the
    scripts' shebangs (the build folder's path, whose length changes their hash and size) and
    bytecode is left out. Lines for files that are not packed are dropped."""
    for name in [n for n in entries if n.endswith(".dist-info/RECORD")]:
        info, data = entries[name]
        if data is None:
            continue
        base = posixpath.dirname(posixpath.dirname(name))
        rows = []
        for row in csv.reader(io.StringIO(data.decode("utf-8"))):
            if not row:
                continue
            member = posixpath.normpath(posixpath.join(base, row[0]))
            if member == name:
                rows.append([row[0], "", ""])
                continue
            packed = entries.get(member)
            if packed is None or packed[1] is None:
                if packed is not None:
                    rows.append(row)  # a symlink: listed as it was
                continue
            digest = base64.urlsafe_b64encode(hashlib.sha256(packed[1]).digest()).rstrip(b"=")
            rows.append([row[0], f"sha256={digest.decode()}", str(len(packed[1]))])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        entries[name] = (info, text.getvalue().encode("utf-8"))


def _file_info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.REGTYPE, mode
    return info


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


def env_hash(requirements: str, target: ServingTarget, backend: EnvBackend) -> str:
    """The cache key: the (locked) requirements, what the target gives the env, and the recipe.

    Nothing of the build machine (not the local interpreter's path or patch version, not its
    glibc): the archive is built for the target and normalised, so it does not depend on them.
    """
    key = {
        "recipe": RECIPE_VERSION,
        "requirements": requirements,
        "python": target.python_version,
        "interpreter": target.interpreter_path,
        "platform": target.manylinux_platform,
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
    target: ServingTarget,
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
            backend.build(requirements, target, workdir, archive, progress)
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
            "target": target.as_json(),
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


def require_execution_env_path(config: ModelConfig, config_path: Path, step: str) -> None:
    """The committed config must point EXECUTION_ENV_PATH at the packed env: mmetools never
    writes a config (packaging and tests change no tracked file)."""
    if EXECUTION_ENV_KEY not in config.parameters:
        raise EnvPackError(
            f"{config_path}: Python step {step} sets no {EXECUTION_ENV_KEY}, so Triton would not "
            f"use the {ENV_ARCHIVE} the env step packs into it; add these lines to the config:\n"
            f"{_PARAMETER_BLOCK}"
        )
    check_execution_env_path(config, config_path)


_PARAMETER_BLOCK = (
    "parameters: {\n"
    f'  key: "{EXECUTION_ENV_KEY}"\n'
    f'  value: {{ string_value: "{EXECUTION_ENV_VALUE}" }}\n'
    "}"
)


def env_requirements(model: ModelFolder, target: ServingTarget) -> tuple[Path, str]:
    """The file the env is installed from and its text for the cache key: the model's lock for
    the target's Python when there is one (hash-pinned: the same env on every machine), else
    requirements.txt (normalised; resolved anew, so a warning says to lock it)."""
    from mmetools.build.lock import locked_digest, lock_path, requirements_digest

    lock = lock_path(model, target)
    requirements = normalized_requirements(model.requirements_file, model.name)
    if lock.is_file():
        text = lock.read_text(encoding="utf-8")
        if locked_digest(text) != requirements_digest(model):
            raise EnvPackError(
                f"{lock}: stale: it was not made from the current {model.requirements_file.name} "
                f"of model '{model.name}'; run `mmetools lock {model.path}` and commit the lock"
            )
        return lock, text
    logger.warning(
        "%s: no %s; the env is resolved from %s and may differ between builds: run "
        "`mmetools lock %s`",
        model.name,
        lock.name,
        model.requirements_file.name,
        model.path,
    )
    return model.requirements_file, requirements


def pack_env(
    model: ModelFolder,
    settings: Settings,
    *,
    progress: Progress | None = None,
    backend: EnvBackend | None = None,
) -> PackedEnv | None:
    """Build (or reuse from the cache) the model's env for the serving target and copy it into
    every Python step. Returns None when the model has no Python steps.

    The steps' committed configs must already point EXECUTION_ENV_PATH at the env (checked
    before anything is built); no config is ever written.
    """

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    steps = sorted(model.python_steps(), key=lambda step: step.name)
    if not steps:
        logger.info("%s: no Python steps, no env to pack", model.name)
        return None
    target = settings.target
    python_version = target.python_version
    # Check every config before building anything: a bad value should not cost a 5-minute build.
    for step in steps:
        require_execution_env_path(step.config, step.config_path, step.name)
    source, requirements = env_requirements(model, target)
    chosen = backend if backend is not None else select_backend(settings)
    digest = env_hash(requirements, target, chosen)
    cache_entry = settings.cache_dir / CACHE_SUBDIR / digest
    cached_archive = cache_entry / ENV_ARCHIVE
    cached = cached_archive.is_file()
    if cached:
        report(f"env {digest[:12]} found in the cache ({chosen.name}, Python {python_version})")
    else:
        report(f"building env {digest[:12]} ({chosen.name}, Python {python_version})")
        try:
            _build_into_cache(chosen, source, target, digest, cache_entry, model.name, report)
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
