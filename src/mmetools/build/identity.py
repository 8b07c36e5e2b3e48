"""The content identity of a model: one sha256 over the model's own files (its steps' code,
configs and weights), the same whether it is read from the model folder, from a tarball or from a
published manifest.

It leaves out what the build adds around the model (the packed env: the model's one env at the
root or each Python step's copy, the tar and
gzip framing), so a model folder and the artifact built from it share one identity, and "new
weights" or "a changed step" is always a new identity. The diff acceptance
(:mod:`mmetools.release.diff.acceptance`) and the version check against production
(:mod:`mmetools.release.versions`) compare it.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
from collections.abc import Iterable
from pathlib import Path

from mmetools.build.manifest import Manifest
from mmetools.build.package import collect_members
from mmetools.core.errors import ArtifactError
from mmetools.model.folder import ENV_ARCHIVE, MODEL_ENV_SUFFIX, ModelFolder

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


def _identity(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over ``<member path> <sha256>`` lines, sorted by path, packed envs left out."""
    digest = hashlib.sha256()
    for name, sha256 in sorted(files):
        if name.rsplit("/", 1)[-1] == ENV_ARCHIVE and name.count("/") == 1:
            continue
        if "/" not in name and name.endswith(MODEL_ENV_SUFFIX):  # the model's one env
            continue
        digest.update(f"{name} {sha256}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_identity(model: ModelFolder) -> str:
    """The identity of ``models/<name>/`` as it would be packaged (weights must be present)."""
    members = collect_members(model, include_env=False)
    return _identity(
        (m.name, _file_sha256(m.source))
        for m in members
        if m.kind == "file" and m.source is not None
    )


def tarball_identity(path: Path, shown: str | None = None) -> str:
    """The identity of an artifact, streamed from the tarball (``shown`` names it in errors)."""
    files: list[tuple[str, str]] = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stream = tar.extractfile(member)
                assert stream is not None
                digest = hashlib.sha256()
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                files.append((member.name.removeprefix("./"), digest.hexdigest()))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArtifactError(f"{shown or path}: not a readable .tar.gz artifact: {e}") from e
    return _identity(files)


def manifest_identity(manifest: Manifest) -> str:
    """The identity of an artifact from its manifest's member list (no download)."""
    return _identity((m.path, m.sha256 or "") for m in manifest.members if m.type == "file")


__all__ = ["folder_identity", "manifest_identity", "tarball_identity"]
