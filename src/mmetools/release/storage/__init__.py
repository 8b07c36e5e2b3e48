"""Where published artifacts live: an S3 bucket prefix or a folder, behind one small interface.

  destination.py    the destination URI (s3://bucket/prefix, file:...) and credential redaction
  base.py           the Store interface, RemoteObject, ObjectExists (the layout and guarantees)
  s3.py             S3Store and the run's shared S3Connection
  s3_checksums.py   the bytes an upload sends, checked part by part; S3's composite CRC32
  s3_content.py     is a stored object the build? by size and S3's CRC32 of its content, or a read
  folder.py         FileStore: a local or mounted folder

Artifact and sidecar names come from build/files.py; the local artifact an upload sends and its
verification from build/verified.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mmetools.build.files import ARTIFACT_SUFFIX
from mmetools.build.verified import LocalArtifact, MiB, PartChecksums, parse_sha256_text
from mmetools.release.storage.base import (
    MANIFEST_READ_LIMIT,
    ObjectExists,
    ProgressCallback,
    RemoteObject,
    Store,
    describe_size,
)
from mmetools.release.storage.destination import (
    Destination,
    DestinationKind,
    parse_destination,
    redact_credentials,
)
from mmetools.release.storage.folder import FileStore
from mmetools.release.storage.s3 import (
    SHA256_METADATA,
    SIDECAR_SHA256_METADATA,
    Deadline,
    S3Connection,
    S3Store,
    S3Tuning,
    stale_uploads,
)
from mmetools.release.storage.s3_checksums import SentBytes, composite_crc32

logger = logging.getLogger(__name__)


def open_store(destination: Destination, connection: Callable[[], S3Connection]) -> Store:
    """The store of ``destination``; ``connection`` is called for S3 only (boto3 loads slowly)."""
    if destination.kind == "s3":
        return S3Store(destination, connection())
    return FileStore(destination)


__all__ = [
    "ARTIFACT_SUFFIX",
    "MANIFEST_READ_LIMIT",
    "SHA256_METADATA",
    "SIDECAR_SHA256_METADATA",
    "Deadline",
    "Destination",
    "DestinationKind",
    "FileStore",
    "LocalArtifact",
    "MiB",
    "ObjectExists",
    "PartChecksums",
    "ProgressCallback",
    "RemoteObject",
    "S3Connection",
    "S3Store",
    "S3Tuning",
    "SentBytes",
    "Store",
    "composite_crc32",
    "describe_size",
    "open_store",
    "parse_destination",
    "parse_sha256_text",
    "redact_credentials",
    "stale_uploads",
]
