"""What every store is: the ``Store`` interface, what it reports under a key (``RemoteObject``)
and the signal of a lost create-only write (``ObjectExists``).

Both stores keep the same layout and the same guarantees:

- ``<key>`` is the artifact; ``<key>.sha256`` and ``<key>.manifest.json`` are its sidecars;
- the artifact is written first and the sidecars after it, by the publisher whose create-only
  write won (or by a rerun of the same build that finds them missing), so a sidecar never
  describes bytes other than the stored artifact's; on S3 the artifact carries its sha256 as
  object metadata (``x-amz-meta-sha256``), atomic with the object, and every sidecar carries the
  sha256 of the artifact it describes (``x-amz-meta-artifact-sha256``);
- the bytes sent are the bytes hashed: the file is opened once and s3transfer reads the parts
  from that handle while a SHA-256 and a CRC32 are computed over them; the upload is completed
  only if that SHA-256 is the recorded one, with the whole object's CRC32 for S3 to check, and
  the completed object's checksum is read back before any sidecar names it;
- the artifact is written create-only (S3 ``If-None-Match: *``; a hard link for folders), so two
  publishers can never overwrite each other, and it appears all at once or not at all (S3
  multipart uploads are invisible until completed; folders get a temp file then a link).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from mmetools.build.verified import LocalArtifact, MiB
from mmetools.core.errors import PublishError
from mmetools.release.storage.destination import Destination

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class RemoteObject:
    """What a destination holds under a key: enough to decide no-op, refusal or copy."""

    key: str
    sha256: str | None  # None: an object without a recorded sha256 (not put there by mmetools)
    size: int
    etag: str = ""
    checksum_crc32: str = ""  # S3's ChecksumCRC32 of the stored bytes ("" when not reported)


class ObjectExists(Exception):
    """A create-only write lost: the key already holds an object (``existing``, None if unknown)."""

    def __init__(self, key: str, existing: RemoteObject | None) -> None:
        super().__init__(key)
        self.key = key
        self.existing = existing


MANIFEST_READ_LIMIT = 64 * MiB  # a manifest lists members: far below this for any real model


class Store(ABC):
    """A destination that can report, write and (maybe) server-side copy artifacts."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    @abstractmethod
    def stat(self, key: str) -> RemoteObject | None:
        """The artifact under ``key`` with its recorded sha256, or None if there is none."""

    @abstractmethod
    def write(self, artifact: LocalArtifact, key: str, progress: ProgressCallback | None) -> None:
        """The artifact create-only, then its sidecars. Raises ObjectExists if ``key`` got taken
        (and then writes no sidecar)."""

    @abstractmethod
    def repair_sidecars(self, artifact: LocalArtifact, key: str) -> bool:
        """``key`` holds ``artifact``'s bytes: rewrite sidecars that are missing or describe
        other bytes (a publish interrupted between artifact and sidecars). True if it wrote."""

    def content_problem(self, remote: RemoteObject, artifact: LocalArtifact) -> str | None:
        """None when ``remote`` (from ``stat``) holds exactly ``artifact``'s bytes, judged by
        what the store computed of its content, never by metadata; else what differs. A folder's
        ``stat`` hashes the file itself, so its sha256 is already the content's."""
        if remote.sha256 != artifact.sha256:
            return f"the stored bytes have sha256 {remote.sha256}"
        return None

    def can_copy_from(self, source: Store) -> bool:
        """True when ``source``'s objects can be copied here without passing through this host."""
        return False

    def read_manifest(self, key: str) -> bytes | None:
        """The manifest sidecar of ``key`` (to explain a refusal), or None when unreadable."""
        return None

    def copy_from(
        self, source: Store, remote: RemoteObject, key: str, artifact: LocalArtifact
    ) -> None:
        """Server-side copy of ``remote`` (and its sidecars) from ``source`` to ``key``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Deadline:
    """When a publish run must be over (time.monotonic()), and the setting it came from."""

    at: float
    seconds: float

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise PublishError(
                f"gave up on {what}: the publish took longer than {self.seconds:g} s "
                "([publish] deadline_s in mmetools.toml); is the S3 endpoint answering?"
            )


def describe_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


__all__ = [
    "MANIFEST_READ_LIMIT",
    "Deadline",
    "ObjectExists",
    "ProgressCallback",
    "RemoteObject",
    "Store",
    "describe_size",
]
