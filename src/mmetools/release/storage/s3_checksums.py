"""The bytes an upload sends, checked as they are read: ``SentBytes`` (one open handle, a CRC32
per part) and S3's composite checksum of an object uploaded in parts (``composite_crc32``).
"""

from __future__ import annotations

import base64
import logging
import os
import zlib
from collections.abc import Sequence

from mmetools.build.verified import LocalArtifact, PartChecksums
from mmetools.core.errors import ArtifactError

logger = logging.getLogger(__name__)


class SentBytes:
    """The artifact as s3transfer reads it: one open handle, checksummed while it is read.

    Not seekable on purpose: s3transfer then reads every byte exactly once, in order, into the
    part bodies it sends (and re-sends on a retry). Each part's CRC32 is computed in that pass
    and must equal the verified build's for the same part (``LocalArtifact.part_crc32s``, from
    the pass that checked its SHA-256), or the upload is never completed. The CRC32 goes with the
    part (S3 checks the body against it; botocore does not read the part again to compute it),
    and S3's composite checksum of the stored object must be the one of these parts.
    """

    def __init__(self, artifact: LocalArtifact, part_size: int) -> None:
        if artifact.part_size != part_size or not artifact.part_crc32s:
            raise ValueError(f"{artifact.path}: verified for {artifact.part_size}-byte parts")
        self.artifact = artifact
        self._file = artifact.path.open("rb")
        self._opened = os.fstat(self._file.fileno())
        self._parts = PartChecksums(part_size)

    @property
    def size(self) -> int:
        return self._parts.size

    @property
    def part_size(self) -> int:
        return self._parts.part_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        data = self._file.read(amount)
        self._parts.update(data)
        return data

    def close(self) -> None:
        self._file.close()

    def part_crc32(self, number: int) -> str | None:
        """CRC32 (base64) of part ``number`` (from 1) once all its bytes were read, else None."""
        crc32s = self._parts.crc32s
        if number <= self._parts.complete or (number == len(crc32s) and self._eof):
            return _crc32_base64(crc32s[number - 1])
        return None

    @property
    def _eof(self) -> bool:
        return self.size == self.artifact.size

    @property
    def part_crc32s(self) -> list[str]:
        return [_crc32_base64(crc) for crc in self._parts.crc32s]

    @property
    def stored_checksum(self) -> str:
        """What S3 reports as ChecksumCRC32 for these bytes: the CRC32 of a single-request
        upload, or of a multipart upload the CRC32 of its parts' CRC32s, then -<parts>."""
        return composite_crc32(self._parts.crc32s, self.size, self.part_size)

    def check(self) -> None:
        """Raise unless the bytes read are exactly the verified build, still under its name."""
        path = self.artifact.path
        if self._file.read(1):
            raise ArtifactError(f"{path}: grew while it was being published; nothing was stored")
        read, verified = self._parts.crc32s, list(self.artifact.part_crc32s)
        if self.size != self.artifact.size or read != verified:
            differs = next((i for i, (a, b) in enumerate(zip(read, verified)) if a != b), None)
            where = f"part {differs + 1} of {len(verified)} differs" if differs is not None else (
                f"{self.size} bytes read, {self.artifact.size} verified"
            )  # fmt: skip
            raise ArtifactError(
                f"{path}: changed while it was being published ({where} from the build with "
                f"sha256 {self.artifact.sha256}); nothing was stored: rebuild and publish again"
            )
        try:
            now = os.stat(path)
        except OSError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (self._opened.st_ino, self._opened.st_dev):
            raise ArtifactError(
                f"{path}: was replaced while it was being published (a rebuild?); nothing was "
                "stored: publish the new build once it is complete"
            )


def composite_crc32(crc32s: Sequence[int], size: int, part_size: int) -> str:
    """S3's ChecksumCRC32 of an object uploaded in ``part_size`` parts with these CRC32s."""
    if size < part_size:  # one request (s3transfer's multipart_threshold is the part size)
        return _crc32_base64(crc32s[0] if crc32s else 0)
    joined = b"".join(crc.to_bytes(4, "big") for crc in crc32s)
    return f"{_crc32_base64(zlib.crc32(joined))}-{len(crc32s)}"


def _crc32_base64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


__all__ = ["PartChecksums", "SentBytes", "composite_crc32"]
