"""Is an S3 object the verified build's bytes? Checked by content, never by its metadata alone.

``x-amz-meta-sha256`` is whatever its writer put there: an object holding other bytes (even of
another size) can carry the build's sha256. So before an object counts as the build (``unchanged``,
or staging's copy that production is copied from), what S3 computed of the stored bytes must be
the build's: its size, and its CRC32 checksum (read by the same HEAD, ``ChecksumMode=ENABLED``):
the composite of an upload in parts of ``part_size`` (or of any multiple of it, as a server-side
copy in parts writes), or the CRC32 of the whole object (a single PutObject or CopyObject). Every
one of these is computed from the part CRC32s of the pass that checked the build's sha256, so this
costs no request and no read. An object without such a checksum (written by another tool, or in
parts of another size) is read once and its SHA-256 compared (``GetObject``, pinned to the ETag
that was checked).

A CRC32 catches any accidental or stale difference, but not a collision crafted on purpose by
someone who can write to the bucket (docs/publish.md, "What the gates guarantee").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mmetools.build.verified import LocalArtifact
from mmetools.release.storage.base import RemoteObject
from mmetools.release.storage.s3_checksums import composite_crc32

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

READ_CHUNK = 8 * 1024 * 1024


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC32 of A + B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine, which
    Python's zlib does not expose): crc32(A) moved over len(B) zero bytes, xor crc32(B)."""
    return _gf2_times(_zeros_operator(length2), crc1) ^ crc2


@functools.lru_cache(maxsize=64)
def _zeros_operator(length: int) -> tuple[int, ...]:
    """The GF(2) operator that appends ``length`` zero bytes to a CRC32 state (columns)."""
    one_bit = [0xEDB88320] + [1 << n for n in range(31)]
    square = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # one zero byte
    result = [1 << n for n in range(32)]  # identity
    while length:
        if length & 1:
            result = [_gf2_times(square, column) for column in result]
        square = _gf2_square(square)
        length >>= 1
    return tuple(result)


def _gf2_times(matrix: Sequence[int], vector: int) -> int:
    total, index = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[index]
        vector >>= 1
        index += 1
    return total


def _gf2_square(matrix: Sequence[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def _merged(crc32s: Sequence[int], sizes: Sequence[int], factor: int) -> list[int]:
    """Part CRC32s of parts ``factor`` times as large, from those of the smaller parts."""
    merged = []
    for start in range(0, len(crc32s), factor):
        crc = crc32s[start]
        for crc_next, size in zip(crc32s[start + 1 : start + factor], sizes[start + 1 :]):
            crc = crc32_combine(crc, crc_next, size)
        merged.append(crc)
    return merged


def build_checksums(artifact: LocalArtifact, part_sizes: Iterable[int]) -> set[str]:
    """Every ChecksumCRC32 S3 can report for exactly the build's bytes: whole-object, and the
    composite of parts of each of ``part_sizes`` that is a multiple of the verified part size."""
    crc32s, part = list(artifact.part_crc32s), artifact.part_size
    if not crc32s or part <= 0:
        return set()
    sizes = [min(part, artifact.size - start) for start in range(0, artifact.size, part)]
    whole = _merged(crc32s, sizes, len(crc32s))[0]
    found = {base64_crc(whole)}
    for size in part_sizes:
        if size < part or size % part or artifact.size < size:
            continue
        composite = composite_crc32(_merged(crc32s, sizes, size // part), artifact.size, size)
        found.update({composite, composite.split("-")[0]})  # moto leaves out -<parts>
    return found


def base64_crc(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def content_problem(
    client: S3Client,
    bucket: str,
    remote: RemoteObject,
    artifact: LocalArtifact,
    part_sizes: Iterable[int],
) -> str | None:
    """None when ``remote`` holds exactly ``artifact``'s bytes; otherwise what differs."""
    if remote.size != artifact.size:
        return f"{remote.size} bytes stored, the build has {artifact.size}"
    stored = remote.checksum_crc32
    expected = build_checksums(artifact, part_sizes)
    if stored and stored in expected:
        return None
    logger.info(
        "%s: no checksum comparable with the build (%s): reading it to compare its sha256",
        remote.key, stored or "none",
    )  # fmt: skip
    if remote.etag:  # the object whose checksum was just read, not a later replacement
        body = client.get_object(Bucket=bucket, Key=remote.key, IfMatch=remote.etag)["Body"]
    else:
        body = client.get_object(Bucket=bucket, Key=remote.key)["Body"]
    digest = hashlib.sha256()
    while chunk := body.read(READ_CHUNK):
        digest.update(chunk)
    if digest.hexdigest() != artifact.sha256:
        return f"the stored bytes have sha256 {digest.hexdigest()}"
    return None


__all__ = ["build_checksums", "content_problem", "crc32_combine"]
