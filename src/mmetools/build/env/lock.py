"""``mmetools lock``: a hash-pinned resolution of each model's requirements for the serving target.

``models/<name>/requirements-<python>.lock`` is written by ``uv pip compile --generate-hashes``
for the target's Python minor version and platform (manylinux within its glibc). The env step
installs from it with ``--require-hashes``, so the same commit gives the same env on every
machine. ``mmetools lock --check`` (run in CI) recompiles into memory and fails when a lock is
missing or differs from what its requirements.txt resolves to now.

A lock pins releases of the package index, by hash, for the target: a direct reference (a git URL,
a URL, a local file or folder: ``name @ ...``, ``./pkg``, ``file:///...``) is refused at lock time,
naming the requirement, before any resolver runs, both in requirements.txt and in what the resolver
wrote (a dependency's own direct reference); so is a source distribution (the env is built from
wheels only) and a wheel whose platform needs a newer glibc than the target's. The env step
checks a committed lock the same way before it installs from it.
"""

from __future__ import annotations

import logging
import re
import sys
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


# A locked requirement: ``name==version`` (extras and a marker allowed), nothing else.
_PINNED = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?\s*===?\s*[^\s;@]+(\s*;.*)?$"
)
_VCS = re.compile(r"(^|[\s@])(git|hg|svn|bzr)\+", re.IGNORECASE)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_SDIST = re.compile(r"\.(tar\.gz|tar\.bz2|tar\.xz|tgz|zip)$", re.IGNORECASE)
_WHEEL_GLIBC = re.compile(r"manylinux_(\d+)_(\d+)_", re.IGNORECASE)
_COMMENT = re.compile(r"(^|\s)#.*$")


def direct_reference_problem(requirement: str, target: ServingTarget) -> str | None:
    """Why ``requirement`` (one line of a requirements file or lock) cannot be locked for
    ``target``, or None for a plain ``name[==version]`` from the package index."""
    text = requirement.strip()
    if text.startswith("-"):
        return None  # options: refused or allowed where requirements are normalised
    reference = text.split("@", 1)[1].strip() if "@" in text else text
    reference = reference.split(";", 1)[0].strip()
    if _VCS.search(text):
        kind = "a VCS (git) URL: its content can change under the same name"
    elif _SDIST.search(reference):
        kind = "a source distribution: the env is installed from wheels only (--only-binary)"
    elif reference.lower().endswith(".whl") and _needs_newer_glibc(reference, target):
        kind = f"a wheel for a newer glibc than the target's ({target.glibc})"
    elif reference.lower().startswith("file:") or reference.startswith((".", "/", "~")):
        kind = "a local file or folder: a path of this machine, absent on every other"
    elif _URL.search(reference):
        kind = "a direct URL"
    elif "@" in text or reference.lower().endswith(".whl"):
        kind = "a direct reference"
    else:
        return None
    return (
        f"'{text}' is {kind}; a lock pins releases of the package index by hash for the target "
        f"(Python {target.python_version} on {target.manylinux_platform}): publish the package to "
        f"the index and require it by name and version"
    )


def _needs_newer_glibc(wheel: str, target: ServingTarget) -> bool:
    found = _WHEEL_GLIBC.search(wheel.rsplit("/", 1)[-1])
    if found is None:
        return False
    allowed = tuple(int(part) for part in target.glibc.split(".")[:2])
    return (int(found.group(1)), int(found.group(2))) > allowed


def check_requirement_sources(model: ModelFolder, target: ServingTarget) -> None:
    """EnvPackError naming file, line and requirement for a direct reference in requirements.txt
    (checked before the resolver runs: a git URL would be cloned, a path read)."""
    path = model.requirements_file
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return  # reported by normalized_requirements with the model's name
    for number, raw in enumerate(lines, start=1):
        line = " ".join(_COMMENT.sub("", raw).split())
        problem = direct_reference_problem(line, target) if line else None
        if problem:
            raise EnvPackError(f"{path}:{number}: model '{model.name}': {problem}")


def lock_problem(text: str, target: ServingTarget) -> tuple[int, str] | None:
    """The first requirement of the lock ``text`` that is not ``name==version`` of the package
    index, as (line number, why), or None."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\\").strip()
        if not line or line.startswith(("#", "--")) or raw[:1].isspace():
            continue
        problem = direct_reference_problem(line, target)
        if problem is None and not _PINNED.match(line):
            problem = f"'{line}' is not pinned to a version of the package index (name==version)"
        if problem:
            return number, problem
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
    check_requirement_sources(model, target)
    with tempfile.TemporaryDirectory(prefix="mmetools-lock-") as work:
        output = Path(work) / "requirements.lock"
        try:
            # --no-header/--no-annotate: no command line or local path in the file;
            # --no-config: a user's uv.toml cannot change the resolution.
            process.run(
                # --python: resolving for --python-version/--python-platform needs no
                # interpreter of the target's version; searching for one took ~10 s.
                [uv, "pip", "compile", "--quiet", "--no-config", "--python", sys.executable,
                 "--generate-hashes",
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
        text = output.read_text(encoding="utf-8")
    # A dependency may bring its own direct reference: what the resolver wrote is checked too.
    problem = lock_problem(text, target)
    if problem is not None:
        raise EnvPackError(
            f"{model.requirements_file}: model '{model.name}' resolves to a requirement that "
            f"cannot be locked: {problem[1]}"
        )
    return _header(model, target) + text


def lock_model(model: ModelFolder, target: ServingTarget, *, check: bool = False) -> LockResult:
    """Write (or with ``check`` only compare) the model's lock for ``target``."""
    path = lock_path(model, target)
    text = compile_lock(model, target)
    # Compared as bytes: a lock edited into something that is not UTF-8 is stale, not a
    # UnicodeDecodeError (found by the fuzz tier).
    current = path.read_bytes() if path.is_file() else None
    if check:
        readable = current.decode("utf-8", errors="replace") if current is not None else None
        problem = lock_problem(readable, target) if readable is not None else None
        if problem is not None:
            raise EnvPackError(f"{path}:{problem[0]}: model '{model.name}': {problem[1]}")
        status = (
            "missing" if current is None else "current" if current == text.encode() else "stale"
        )
        return LockResult(model.name, path, status)
    if current == text.encode():
        return LockResult(model.name, path, "unchanged")
    write_text_atomically(path, text)
    logger.info("%s: wrote %s", model.name, path)
    return LockResult(model.name, path, "written")
