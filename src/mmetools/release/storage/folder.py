"""A folder (local disk or a mounted share) as a store, with S3's layout and guarantees: the
artifact is copied to a temp file while hashed, then linked create-only under its name; the
sidecars are written atomically after it, the manifest last (core/atomic.py for every write).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from mmetools.build.files import LocalFiles
from mmetools.build.verified import LocalArtifact, MiB, parse_sha256_text
from mmetools.core.atomic import (
    fsync_folder,
    link_create_only,
    owned_temp_path,
    remove_orphaned_temps,
    write_bytes_atomically,
)
from mmetools.core.errors import ArtifactError
from mmetools.core.jsontext import parse_json
from mmetools.release.storage.base import (
    MANIFEST_READ_LIMIT,
    ObjectExists,
    ProgressCallback,
    RemoteObject,
    Store,
)

logger = logging.getLogger(__name__)


class FileStore(Store):
    """A folder (local disk or a mounted share). Same layout and guarantees as S3."""

    COPY_CHUNK = 8 * MiB

    @property
    def root(self) -> Path:
        assert self.destination.path is not None
        return self.destination.path

    def stat(self, key: str) -> RemoteObject | None:
        path = self.root / key
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        # The bytes are the truth, never the .sha256 beside them: a folder has no metadata that
        # is atomic with the file, and a sidecar can be stale (an interrupted or older publish).
        with path.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        return RemoteObject(key=key, sha256=sha256, size=size)

    def repair_sidecars(self, artifact: LocalArtifact, key: str) -> bool:
        final = self.root / key
        sha_path, manifest_path = LocalFiles(final).sha256, LocalFiles(final).manifest
        try:
            sha_ok = parse_sha256_text(sha_path.read_text("utf-8", "replace")) == artifact.sha256
            manifest_ok = _manifest_describes(manifest_path.read_bytes(), artifact.sha256)
        except (FileNotFoundError, IsADirectoryError):
            sha_ok = manifest_ok = False
        if sha_ok and manifest_ok:
            return False
        logger.warning(
            "%s: sidecars missing or not of this artifact (an interrupted publish): rewriting them",
            final.as_uri(),
        )
        self._write_sidecars(artifact, final)
        return True

    def _write_sidecars(self, artifact: LocalArtifact, final: Path) -> None:
        # The manifest last: once it is there, both sidecars describe the stored artifact.
        files = LocalFiles(final)
        write_bytes_atomically(files.sha256, artifact.sha256_sidecar)
        write_bytes_atomically(files.manifest, artifact.manifest_path.read_bytes())
        fsync_folder(final.parent, best_effort=False)

    def read_manifest(self, key: str) -> bytes | None:
        try:
            with LocalFiles(self.root / key).manifest.open("rb") as stream:
                return stream.read(MANIFEST_READ_LIMIT)
        except OSError:
            return None

    def write(self, artifact: LocalArtifact, key: str, progress: ProgressCallback | None) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temps(final)
        temp = owned_temp_path(final)
        try:
            digest = hashlib.sha256()
            with artifact.path.open("rb") as src, temp.open("xb") as dst:
                while chunk := src.read(self.COPY_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                dst.flush()
                os.fsync(dst.fileno())
            if digest.hexdigest() != artifact.sha256:
                raise ArtifactError(
                    f"{artifact.path}: changed while it was being published "
                    f"(sha256 now {digest.hexdigest()}, expected {artifact.sha256})"
                )
            try:
                link_create_only(temp, final)
            except FileExistsError as e:
                # Lost the race: the winner writes the sidecars, this publisher writes none.
                raise ObjectExists(key, self.stat(key)) from e
            fsync_folder(final.parent, best_effort=False)
        finally:
            temp.unlink(missing_ok=True)
        self._write_sidecars(artifact, final)


def _manifest_describes(data: bytes, sha256: str) -> bool:
    """True unless the manifest names another artifact sha256 (it may not name one at all)."""
    try:
        manifest = parse_json(data)
    except ValueError:
        return False
    if not isinstance(manifest, dict):
        return False
    return bool(manifest.get("sha256", sha256) == sha256)


__all__ = ["FileStore"]
