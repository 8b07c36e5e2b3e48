"""``mmetools lock``: a hash-pinned resolution of each model's requirements for the serving target.

``models/<name>/requirements-<python>.lock`` is written by ``uv pip compile --generate-hashes``
for the target's Python minor version and platform (manylinux within its glibc). The env step
installs from it with ``--require-hashes``, so the same commit gives the same env on every
machine. ``mmetools lock --check`` (run in CI) recompiles into memory and fails when a lock is
missing or differs from what its requirements.txt resolves to now.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmetools.build.env.requirements import requirements_digest
from mmetools.core import process
from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import EnvPackError, ProcessError
from mmetools.model.folder import ModelFolder
from mmetools.core.targets import ServingTarget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockResult:
    model: str
    path: Path
    status: str  # "written", "unchanged", "current", "stale", "missing"


def lock_path(model: ModelFolder, target: ServingTarget) -> Path:
    return model.path / f"requirements-{target.python_version}.lock"


REQUIREMENTS_DIGEST = "# requirements.txt sha256: "


def locked_digest(lock_text: str) -> str | None:
    for line in lock_text.splitlines():
        if line.startswith(REQUIREMENTS_DIGEST):
            return line[len(REQUIREMENTS_DIGEST) :].strip()
    return None


def _header(model: ModelFolder, target: ServingTarget) -> str:
    return (
        f"# Locked by `mmetools lock` for Python {target.python_version} on "
        f"{target.manylinux_platform}.\n"
        "# Regenerate after editing requirements.txt: mmetools lock models/<name>\n"
        f"{REQUIREMENTS_DIGEST}{requirements_digest(model)}\n"
    )


def compile_lock(model: ModelFolder, target: ServingTarget) -> str:
    """The lock text requirements.txt resolves to for ``target`` (nothing written)."""
    uv = process.find_tool("uv")
    if uv is None:
        raise EnvPackError("mmetools lock needs uv (a dependency of mmetools: run ci/bootstrap)")
    if not model.requirements_file.is_file():
        raise EnvPackError(
            f"{model.requirements_file}: missing; model '{model.name}' has no requirements to lock"
        )
    with tempfile.TemporaryDirectory(prefix="mmetools-lock-") as work:
        output = Path(work) / "requirements.lock"
        try:
            # --no-header/--no-annotate: no command line or local path in the file;
            # --no-config: a user's uv.toml cannot change the resolution.
            process.run(
                [uv, "pip", "compile", "--quiet", "--no-config", "--generate-hashes",
                 "--no-header", "--no-annotate", "--python-version", target.python_version,
                 "--python-platform", target.manylinux_platform, "--only-binary", ":all:",
                 "--output-file", str(output), model.requirements_file.name],
                cwd=model.path, context=f"uv pip compile {model.requirements_file}",
            )  # fmt: skip
        except ProcessError as e:
            raise EnvPackError(
                f"{model.requirements_file}: model '{model.name}' does not resolve for Python "
                f"{target.python_version} on {target.manylinux_platform}: {e}"
            ) from e
        return _header(model, target) + output.read_text(encoding="utf-8")


def lock_model(model: ModelFolder, target: ServingTarget, *, check: bool = False) -> LockResult:
    """Write (or with ``check`` only compare) the model's lock for ``target``."""
    path = lock_path(model, target)
    text = compile_lock(model, target)
    # Compared as bytes: a lock edited into something that is not UTF-8 is stale, not a
    # UnicodeDecodeError (found by the fuzz tier).
    current = path.read_bytes() if path.is_file() else None
    if check:
        status = (
            "missing" if current is None else "current" if current == text.encode() else "stale"
        )
        return LockResult(model.name, path, status)
    if current == text.encode():
        return LockResult(model.name, path, "unchanged")
    write_text_atomically(path, text)
    logger.info("%s: wrote %s", model.name, path)
    return LockResult(model.name, path, "written")
