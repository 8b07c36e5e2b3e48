"""The Python environment a model's Python steps run in when the model ships no packed env.

In production a step either carries ``python_env.tar.gz`` (EXECUTION_ENV_PATH) or runs in the
Python of the Triton image. Locally, mmetools builds a venv from the model's ``requirements.txt``
with the interpreter mmetools runs on (the bundled server has a stub for it), caches it under
``<cache>/serving-envs/<key>`` (key = hash of the requirements and the interpreter) and puts its
``bin`` first on the server's PATH, which is how the stub picks its ``sys.prefix``.

The env holds only the requirements (plus numpy, which Triton's python backend utilities import
and Triton's images provide), so a step that imports a package the model forgot to list fails here
as it would in production. The onnxruntime/pytorch Python-based backends find their packages
through a variable mmetools sets instead (see :mod:`mmetools.testing.triton`).

``serving_env_problem`` runs the audit's package rules on it for the serving target (numpy against
the target's python backend) before any Triton starts, with the words `mmetools inspect` uses for
the packed env: the same unpinned requirement fails the source test and the shipped env alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmetools.build.env_audit import numpy_problem
from mmetools.core import process
from mmetools.core.errors import EnvPackError, ProcessError
from mmetools.core.interpreters import find_python
from mmetools.core.targets import ServingTarget

logger = logging.getLogger(__name__)

# Bump when the way envs are built changes, so old cached envs are not reused.
ENV_FORMAT = "1"
COMPLETE_MARKER = ".mmetools-complete"
_NUMPY_REQUIREMENT = re.compile(r"^\s*numpy\b", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class ServingEnv:
    """A Python environment (a venv or the current interpreter's prefix) and its Python."""

    path: Path
    python_version: str  # "3.11": picks the python backend stub
    key: str  # equal keys mean the same packages: models that share one can share a server

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python3"


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def current_environment() -> ServingEnv:
    """The environment mmetools itself runs in (used by the pytest plugin's server)."""
    return ServingEnv(Path(sys.prefix), python_version(), f"current-{python_version()}")


def env_key(requirements: str, interpreter: Path | None = None) -> str:
    """Cache key of a serving env: its requirements text and the exact interpreter."""
    interpreter = interpreter or Path(sys.executable)
    digest = hashlib.sha256()
    for part in (ENV_FORMAT, sys.version, str(interpreter.resolve()), requirements.strip()):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def read_requirements(path: Path) -> str:
    """The text of a requirements file, or "" when the model has none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as e:
        raise EnvPackError(f"{path}: cannot read the requirements: {e}") from e


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file: two runs building the same env wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv() -> list[str] | None:
    found = process.find_tool("uv")
    return [found] if found else None


def ensure_serving_env(
    requirements_file: Path, cache_dir: Path, interpreter: Path | None = None
) -> ServingEnv:
    """The cached serving env for ``requirements_file`` (missing file: no requirements),
    built on first use with ``uv`` (or ``python -m venv`` + pip when uv is absent)."""
    interpreter = interpreter or Path(sys.executable)
    requirements = read_requirements(requirements_file)
    key = env_key(requirements, interpreter)
    env = ServingEnv(cache_dir / "serving-envs" / key, python_version(), key)
    if (env.path / COMPLETE_MARKER).exists():
        return env
    with _locked(env.path.with_name(f"{key}.lock")):
        if (env.path / COMPLETE_MARKER).exists():
            return env
        shutil.rmtree(env.path, ignore_errors=True)  # a build interrupted earlier
        logger.info("building the serving env for %s (cached afterwards)", requirements_file)
        try:
            _build(env.path, requirements_file if requirements else None, requirements, interpreter)
        except ProcessError as e:
            shutil.rmtree(env.path, ignore_errors=True)
            raise EnvPackError(
                f"{requirements_file}: could not build the serving environment:\n{e}"
            ) from e
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        (env.path / COMPLETE_MARKER).write_text(requirements, encoding="utf-8")
    return env


def _build(path: Path, requirements_file: Path | None, text: str, interpreter: Path) -> None:
    # numpy: triton_python_backend_utils imports it, and Triton's images ship it.
    extra = [] if _NUMPY_REQUIREMENT.search(text) else ["numpy"]
    files = ["-r", requirements_file.name] if requirements_file is not None else []
    cwd = requirements_file.parent if requirements_file is not None else None
    uv = _uv()
    if uv is not None:
        process.run([*uv, "venv", "--quiet", "--python", str(interpreter), str(path)])
        python = str(path / "bin" / "python")
        process.run([*uv, "pip", "install", "--quiet", "--python", python, *files, *extra], cwd=cwd)
        return
    process.run([str(interpreter), "-m", "venv", str(path)])
    python = str(path / "bin" / "python")
    process.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *files, *extra],
        cwd=cwd,
    )


_NUMPY_DIST = re.compile(r"^numpy-([0-9][^/]*)\.dist-info$")


def serving_env_problem(env: ServingEnv, target: ServingTarget) -> str | None:
    """The audit finding (``<file>: <message>``, as `mmetools inspect` words it) that the packages
    of ``env`` get for ``target``, or None."""
    site = Path("lib") / f"python{env.python_version}" / "site-packages"
    try:
        names = sorted(entry.name for entry in (env.path / site).iterdir())
    except OSError:
        return None  # no such folder: nothing installed there to audit
    for name in names:
        match = _NUMPY_DIST.match(name)
        problem = numpy_problem(match.group(1), target) if match else None
        if problem:
            return f"{site.as_posix()}/{name}: {problem}"
    return None


IMAGE_PACKAGES_FORMAT = "2"  # 2: with bytecode, as pip installs them in the image


def ensure_image_packages(target: ServingTarget, cache_dir: Path) -> Path | None:
    """The packages ``target``'s image installs for the python backend (its ``image_packages``),
    installed for the target's Python and platform as ``<folder>/lib/python3.X/site-packages``
    (cached under ``<cache>/image-packages/<key>``), for the emulation to overlay on the image's
    prefix; None when the target records none."""
    if not target.image_packages:
        return None
    pins = [f"{name}=={version}" for name, version in target.image_packages]
    digest = hashlib.sha256(
        "\0".join(
            [IMAGE_PACKAGES_FORMAT, target.python_version, target.manylinux_platform, *pins]
        ).encode()
    ).hexdigest()[:16]
    folder = cache_dir / "image-packages" / digest
    if (folder / COMPLETE_MARKER).exists():
        return folder
    uv = _uv()
    if uv is None:
        raise EnvPackError("emulating the image's packages needs uv (run ci/bootstrap)")
    with _locked(folder.with_name(f"{digest}.lock")):
        if (folder / COMPLETE_MARKER).exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        site = folder / "lib" / f"python{target.python_version}" / "site-packages"
        logger.info("installing the image's packages for the emulation: %s", ", ".join(pins))
        try:
            process.run(
                [*uv, "pip", "install", "--quiet", "--no-config", "--target", str(site),
                 "--python-platform", target.manylinux_platform, "--python-version",
                 target.python_version, "--no-build", "--no-deps", *pins],
                context=f"installing {', '.join(pins)} for the emulated image",
            )  # fmt: skip
            # pip compiles bytecode when the image's Dockerfile installs them: so does this.
            process.run(
                [str(find_python(target.python_version).executable), "-m", "compileall", "-q",
                 str(site)],
                context="compiling the emulated image's packages",
            )  # fmt: skip
        except ProcessError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise EnvPackError(f"cannot install the image's packages ({', '.join(pins)}): {e}")
        (folder / COMPLETE_MARKER).write_text("\n".join(pins) + "\n", encoding="utf-8")
    return folder
