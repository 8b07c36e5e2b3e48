"""A local artifact checked against its sidecars, and the checksum cache that spares a re-read.

``load_local_artifact`` is the gate before an artifact's bytes go anywhere: its name parses, its
``.sha256`` names it and holds the sha256 of its bytes, and its manifest describes that build. The
same read computes the CRC32 of each ``part_size`` piece (what an upload in parts must send, see
release/storage/s3_checksums.py). A verified (path, size, mtime, ctime, inode, device) is
remembered under ``<cache_dir>/publish-verified/`` with both, so an untouched file is not read
again; ``remember_verified`` lets the writer of a file (``mmetools package``) record it directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmetools.build.files import ArtifactFiles
from mmetools.build.manifest import Manifest, read_manifest, sha256_line
from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import ArtifactError, UsageError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB  # S3Tuning.part_size: the parts an upload sends
CHECKSUM_BLOCK = 1 << 20  # bytes per read when verifying an artifact

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class LocalArtifact:
    """A verified local artifact and the bytes of its sidecars."""

    path: Path
    model: str
    version: int
    sha256: str
    size: int
    manifest_path: Path
    # CRC32 of each part_size piece of the verified bytes (computed in the pass that checked the
    # sha256): what an upload reads must have exactly these, part by part.
    part_size: int = 0
    part_crc32s: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sha256_sidecar(self) -> bytes:
        # Same format as `sha256sum`, so `sha256sum -c` works on a downloaded pair.
        return sha256_line(self.sha256, self.name).encode()


class PartChecksums:
    """The CRC32 of each ``part_size`` piece of a byte stream, whatever the sizes fed in."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.crc32s: list[int] = []  # the last one may still grow
        self._last_size = part_size
        self.size = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._last_size == self.part_size:
                self.crc32s.append(0)
                self._last_size = 0
            chunk = view[: self.part_size - self._last_size]
            self.crc32s[-1] = zlib.crc32(chunk, self.crc32s[-1])
            self._last_size += len(chunk)
            view = view[len(chunk) :]
        self.size += len(data)

    @property
    def complete(self) -> int:
        """How many parts are whole (the last one counts once the stream ended)."""
        return len(self.crc32s) - (self._last_size < self.part_size)


def parse_sha256_text(text: str) -> str | None:
    """The hash of a ``.sha256`` file (``<hex>  <name>`` or just ``<hex>``), or None if malformed."""
    tokens = text.split()
    if not tokens or not _SHA256_HEX.match(tokens[0].lower()):
        return None
    return tokens[0].lower()


def load_local_artifact(
    path: Path, cache_dir: Path | None = None, part_size: int = DEFAULT_PART_SIZE
) -> LocalArtifact:
    """Check an artifact and its siblings; its sha256 must equal its ``.sha256`` file.

    The same pass computes the CRC32 of each ``part_size`` piece: an upload in parts of that
    size must read exactly these (storage.SentBytes). Hashing a large tarball takes seconds, so a
    verified (path, size, mtime, inode) is remembered under ``cache_dir`` with both, and a
    re-publish of an untouched file does not read it again.
    """
    files = ArtifactFiles.parse(path)
    model, version = files.model, files.version
    try:
        stat = path.stat()
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no such file (build it with `mmetools package`)") from e
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    sha_path = files.local(path.parent).sha256
    manifest_path = files.local(path.parent).manifest
    try:
        with sha_path.open("rb") as stream:
            sha_text = stream.read(4096).decode("utf-8", errors="replace")
    except FileNotFoundError as e:
        raise ArtifactError(
            f"{path}: {sha_path.name} is missing; `mmetools package` writes it next to the artifact"
        ) from e
    except OSError as e:
        raise ArtifactError(f"{sha_path}: cannot read it: {e.strerror or e}") from e
    expected = parse_sha256_text(sha_text)
    named = sha_text.split()[1:2]
    if expected is None:
        raise ArtifactError(f"{sha_path}: expected '<64 hex digits>  {path.name}'")
    if named and named[0].lstrip("*") != path.name:
        raise ArtifactError(f"{sha_path}: holds the sha256 of {named[0]!r}, not of {path.name}")
    _check_manifest(manifest_path, model, version, expected)

    remembered = _cached_checksums(path, stat, cache_dir, expected, part_size)
    if remembered is None:
        actual, part_crc32s = read_checksums(path, part_size)
        if actual == expected:
            _remember_checksums(path, stat, cache_dir, actual, part_size, part_crc32s)
    else:
        actual, part_crc32s = expected, remembered
    if actual != expected:
        raise ArtifactError(
            f"{path}: sha256 is {actual} but {sha_path.name} says {expected}; the file changed "
            "after packaging: rebuild it with `mmetools package`"
        )
    return LocalArtifact(
        path=path, model=model, version=version, sha256=actual, size=stat.st_size,
        manifest_path=manifest_path, part_size=part_size, part_crc32s=part_crc32s,
    )  # fmt: skip


def remember_verified(
    path: Path, sha256: str, cache_dir: Path, part_size: int = DEFAULT_PART_SIZE
) -> None:
    """For the writer of ``path``, who hashed its bytes as it wrote them: remember them as
    verified, so that publishing the file from this machine does not hash it again. Reads the
    file once for its part CRC32s (cheap next to a SHA-256)."""
    try:
        stat = path.stat()
        parts = PartChecksums(part_size)
        for block in _blocks(path):
            parts.update(block)
    except OSError as e:  # a cache is an optimisation: never fail the writer over it
        logger.debug("could not remember %s as verified: %s", path, e)
        return
    _remember_checksums(path, stat, cache_dir, sha256, part_size, tuple(parts.crc32s))


def read_checksums(path: Path, part_size: int) -> tuple[str, tuple[int, ...]]:
    """(sha256, CRC32 of each part) of the file at ``path``, in one read."""
    digest, parts = hashlib.sha256(), PartChecksums(part_size)
    for block in _blocks(path):
        digest.update(block)
        parts.update(block)
    return digest.hexdigest(), tuple(parts.crc32s)


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in CHECKSUM_BLOCK pieces, read once."""
    with path.open("rb", buffering=0) as f:
        while block := f.read(CHECKSUM_BLOCK):
            yield block


def _check_manifest(path: Path, model: str, version: int, sha256: str) -> Manifest:
    """The artifact's manifest, validated, and consistent with its name and its .sha256."""
    manifest = read_manifest(path)
    if manifest.model != model or manifest.version != version:
        raise ArtifactError(
            f"{path}: manifest is for {manifest.artifact}, "
            f"not {ArtifactFiles(model, version).tarball}"
        )
    if manifest.sha256 != sha256:
        raise ArtifactError(
            f"{path}: manifest describes a build with sha256 {manifest.sha256}, but the "
            f".sha256 file says {sha256}: the two come from different builds; rebuild with "
            "`mmetools build`"
        )
    return manifest


def _cache_file(path: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir / "publish-verified" / f"{digest}.json"


def _fingerprint(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _cached_checksums(
    path: Path, stat: os.stat_result, cache_dir: Path | None, expected: str, part_size: int
) -> tuple[int, ...] | None:
    """The part CRC32s remembered for this file's stat, if its sha256 was verified as
    ``expected`` with parts of ``part_size``."""
    if cache_dir is None:
        return None
    try:
        data = json.loads(_cache_file(path, cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("stat") != _fingerprint(stat):
        return None
    crc32s = data.get("part_crc32s")
    if data.get("sha256") != expected or data.get("part_size") != part_size:
        return None
    if not isinstance(crc32s, list) or not all(isinstance(c, int) for c in crc32s):
        return None
    return tuple(crc32s) if len(crc32s) == max(1, -(-stat.st_size // part_size)) else None


def _remember_checksums(
    path: Path,
    stat: os.stat_result,
    cache_dir: Path | None,
    sha: str,
    part_size: int,
    part_crc32s: tuple[int, ...],
) -> None:
    if cache_dir is None:
        return
    target = _cache_file(path, cache_dir)
    record = {"stat": _fingerprint(stat), "sha256": sha, "part_size": part_size,
              "part_crc32s": list(part_crc32s)}  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(target, json.dumps(record))
    except OSError as e:  # a cache is an optimisation: never fail a publish over it
        logger.debug("could not record the verified sha256 of %s: %s", path, e)


__all__ = [
    "CHECKSUM_BLOCK",
    "DEFAULT_PART_SIZE",
    "LocalArtifact",
    "MiB",
    "PartChecksums",
    "load_local_artifact",
    "parse_sha256_text",
    "read_checksums",
    "remember_verified",
]
