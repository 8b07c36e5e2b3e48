"""The files of one artifact, named here only: ``<name>_<version>.tar.gz`` and its sidecars.

  <name>_<version>.tar.gz                 the tarball a SageMaker multi-model endpoint loads
  <name>_<version>.tar.gz.sha256          its sha256, in ``sha256sum`` format
  <name>_<version>.tar.gz.manifest.json   what is in it (build/manifest.py)
  <name>_<version>.evidence.json          the tests these exact bytes passed (release/evidence.py)

The same names in a ``dist/`` folder and in a store (an S3 prefix or a folder): a store holds the
tarball, its ``.sha256`` and its manifest (the evidence travels inside the published manifest).
``ArtifactFiles`` is the one value to derive them from; ``LocalFiles`` and ``StoredFiles`` are its
paths in a folder and its keys in a store. The Pants plugin cannot import mmetools and keeps a
copy of these suffixes (pants-plugins/mmetools_pants/artifact_names.py); a test checks the two agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mmetools.model.folder import (
    ARTIFACT_SUFFIX,
    ModelRef,
    artifact_file_name,
    parse_artifact_name,
)

logger = logging.getLogger(__name__)

SHA256_SUFFIX = ".sha256"  # appended to the tarball's name
MANIFEST_SUFFIX = ".manifest.json"  # appended to the tarball's name
EVIDENCE_SUFFIX = ".evidence.json"  # appended to the tarball's name without ARTIFACT_SUFFIX


def sha256_name(tarball: str) -> str:
    """``m_1.tar.gz`` -> ``m_1.tar.gz.sha256`` (a file name or a store key)."""
    return tarball + SHA256_SUFFIX


def manifest_name(tarball: str) -> str:
    """``m_1.tar.gz`` -> ``m_1.tar.gz.manifest.json`` (a file name or a store key)."""
    return tarball + MANIFEST_SUFFIX


def evidence_name(tarball: str) -> str:
    """``m_1.tar.gz`` -> ``m_1.evidence.json``."""
    return tarball.removesuffix(ARTIFACT_SUFFIX) + EVIDENCE_SUFFIX


@dataclass(frozen=True)
class LocalFiles:
    """The paths of an artifact's files in one folder (from the tarball's path)."""

    tarball: Path

    @property
    def sha256(self) -> Path:
        return self.tarball.with_name(sha256_name(self.tarball.name))

    @property
    def manifest(self) -> Path:
        return self.tarball.with_name(manifest_name(self.tarball.name))

    @property
    def evidence(self) -> Path:
        return self.tarball.with_name(evidence_name(self.tarball.name))

    @property
    def sidecars(self) -> tuple[Path, Path, Path]:
        """(manifest, sha256, evidence): the files that go into place before the tarball."""
        return (self.manifest, self.sha256, self.evidence)

    def remove(self) -> list[Path]:
        """Remove the set (the evidence first: never evidence left beside a half-removed set);
        the paths that were there. OSError when one cannot be removed."""
        removed = []
        for path in (self.evidence, self.tarball, self.sha256, self.manifest):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed


@dataclass(frozen=True)
class StoredFiles:
    """The keys of an artifact's objects in a store (from the tarball's key)."""

    tarball: str

    @property
    def sha256(self) -> str:
        return sha256_name(self.tarball)

    @property
    def manifest(self) -> str:
        return manifest_name(self.tarball)

    @property
    def sidecars(self) -> tuple[str, str]:
        """(sha256, manifest): written after the tarball, the manifest last (it marks them
        complete)."""
        return (self.sha256, self.manifest)


@dataclass(frozen=True)
class ArtifactFiles:
    """One artifact's file set: a model name and the version it ships as."""

    model: str
    version: int

    @classmethod
    def of(cls, ref: ModelRef) -> ArtifactFiles:
        return cls(ref.name, ref.version)

    @classmethod
    def parse(cls, path: Path) -> ArtifactFiles:
        """``dist/m_3.tar.gz`` -> ArtifactFiles("m", 3); UsageError for any other name."""
        return cls.of(parse_artifact_name(path))

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.model, self.version)

    @property
    def tarball(self) -> str:
        return self.ref.artifact_name

    @property
    def sha256(self) -> str:
        return sha256_name(self.tarball)

    @property
    def manifest(self) -> str:
        return manifest_name(self.tarball)

    @property
    def evidence(self) -> str:
        return evidence_name(self.tarball)

    def local(self, folder: Path) -> LocalFiles:
        return LocalFiles(folder / self.tarball)

    def keys(self, prefix: str = "") -> StoredFiles:
        """Its keys under ``prefix`` (an S3 key prefix or a folder's relative path)."""
        return StoredFiles("/".join(part for part in (prefix.strip("/"), self.tarball) if part))


__all__ = [
    "ARTIFACT_SUFFIX",
    "EVIDENCE_SUFFIX",
    "MANIFEST_SUFFIX",
    "SHA256_SUFFIX",
    "ArtifactFiles",
    "LocalFiles",
    "StoredFiles",
    "artifact_file_name",
    "evidence_name",
    "manifest_name",
    "sha256_name",
]
