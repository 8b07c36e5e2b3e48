"""The JSON manifest written beside every artifact: ``<name>_<version>.manifest.json``.

It says what went into the tarball and from where: the model and version, the git commit and
branch it was built from (and whether the model folder had uncommitted changes), the sha256 and
size of the artifact and of every member, the packed env's hash, and the tool versions. It holds
no timestamp and no absolute path, so the same inputs give the same manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mmetools import process
from mmetools.errors import ArtifactError, MmetoolsError

MANIFEST_FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"
SHA256_SUFFIX = ".sha256"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str
    dirty: bool | None  # None outside git

    def as_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty}


def git_info(path: Path) -> GitInfo:
    """Commit, branch and dirty flag of the checkout holding ``path`` ("unknown" outside git).

    ``dirty`` covers ``path`` only: uncommitted changes elsewhere do not change this artifact.
    A detached HEAD (as in CI) reports the branch "HEAD".
    """

    def git(*args: str) -> str:
        return process.run(["git", "-C", str(path), *args], context="git").output.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    except MmetoolsError:
        return GitInfo(UNKNOWN, UNKNOWN, None)
    return GitInfo(commit, branch, bool(status))


def mmetools_version() -> str:
    try:
        return metadata.version("mmetools")
    except metadata.PackageNotFoundError:
        return UNKNOWN


def sha256_line(sha256: str, filename: str) -> str:
    """One line in ``sha256sum`` format, so ``sha256sum -c`` checks the artifact in its folder."""
    return f"{sha256}  {filename}\n"


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2) + "\n"


def read_manifest(path: Path) -> dict[str, Any]:
    """Load a manifest written by ``mmetools package``; ArtifactError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: manifest not found (build it with `mmetools package`)") from e
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a readable JSON manifest: {e}") from e
    required = ("format", "model", "version", "artifact", "sha256", "size", "members")
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise ArtifactError(f"{path}: manifest lacks {', '.join(missing)}")
    return dict(data)
