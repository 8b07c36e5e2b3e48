"""Where published artifacts live: an S3 bucket prefix or a folder, behind one small interface.

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

import base64
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.parse
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmetools.core.jsontext import parse_json
from mmetools.core.errors import ArtifactError, ConfigError, PublishError
from mmetools.build.manifest import MANIFEST_SUFFIX, SHA256_SUFFIX, sha256_line

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import MultipartUploadTypeDef

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
ARTIFACT_SUFFIX = ".tar.gz"
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256
SIDECAR_SHA256_METADATA = "artifact-sha256"  # on sidecars: the artifact they describe

DestinationKind = Literal["s3", "file"]
ProgressCallback = Callable[[int], None]

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s\"'<>]+@")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def redact_credentials(text: str) -> str:
    """``http://user:password@host`` -> ``http://***@host`` wherever a URL appears in ``text``
    (AWS_ENDPOINT_URL may carry credentials; botocore repeats the URL in its errors)."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


@dataclass(frozen=True)
class Destination:
    """A parsed destination URI: ``s3://bucket/prefix`` or a folder (``file:///abs``, ``file:rel``)."""

    uri: str
    kind: DestinationKind
    bucket: str = ""
    prefix: str = ""  # S3 key prefix without leading or trailing "/"
    path: Path | None = None  # folder of a file destination, absolute

    def object_uri(self, key: str) -> str:
        if self.kind == "s3":
            return f"s3://{self.bucket}/{key}"
        assert self.path is not None
        return (self.path / key).as_uri()

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under this destination (S3 prefix included)."""
        if self.kind == "s3":
            return "/".join(p for p in (self.prefix, *parts) if p)
        return "/".join(p for p in parts if p)


def parse_destination(uri: str, root: Path, setting: str) -> Destination:
    """Parse a destination setting; ``setting`` names where it came from for error messages."""
    parsed = urllib.parse.urlsplit(uri.strip())
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not _BUCKET_NAME.match(bucket):
            raise ConfigError(
                f"{setting} = {uri!r}: '{bucket}' is not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.' and '-')"
            )
        if parsed.query or parsed.fragment:
            raise ConfigError(f"{setting} = {uri!r}: an S3 URI takes no '?' or '#' part")
        prefix = parsed.path.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ConfigError(f"{setting} = {uri!r}: the key prefix has an empty, '.' or '..' part")
        return Destination(
            uri=f"s3://{bucket}/{prefix}".rstrip("/"), kind="s3", bucket=bucket, prefix=prefix
        )
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{setting} = {uri!r}: file URIs name a local folder: file:///absolute/path or "
                "file:relative/path (relative to the repository root), not a host"
            )
        raw = urllib.parse.unquote(parsed.path)
        if not raw:
            raise ConfigError(f"{setting} = {uri!r}: no folder given")
        folder = Path(raw)
        if not folder.is_absolute():
            # "file:rel/path" (the embedded default) resolves against the repository root.
            folder = root / folder
        folder = Path(os.path.normpath(folder))
        return Destination(uri=folder.as_uri(), kind="file", path=folder)
    raise ConfigError(
        f"{setting} = {uri!r}: unsupported destination; use s3://bucket/prefix, "
        "file:///absolute/path or file:relative/path"
    )


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

    @property
    def metadata(self) -> dict[str, str]:
        return {SHA256_METADATA: self.sha256, "model": self.model, "version": str(self.version)}


@dataclass(frozen=True)
class RemoteObject:
    """What a destination holds under a key: enough to decide no-op, refusal or copy."""

    key: str
    sha256: str | None  # None: an object without a recorded sha256 (not put there by mmetools)
    size: int
    etag: str = ""


class ObjectExists(Exception):
    """A create-only write lost: the key already holds an object (``existing``, None if unknown)."""

    def __init__(self, key: str, existing: RemoteObject | None) -> None:
        super().__init__(key)
        self.key = key
        self.existing = existing


def parse_sha256_text(text: str) -> str | None:
    """The hash of a ``.sha256`` file (``<hex>  <name>`` or just ``<hex>``), or None if malformed."""
    tokens = text.split()
    if not tokens or not _SHA256_HEX.match(tokens[0].lower()):
        return None
    return tokens[0].lower()


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


# --------------------------------------------------------------------------------------------
# S3


@dataclass(frozen=True)
class S3Tuning:
    part_size: int = 16 * MiB
    max_concurrency: int = 8
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = 5  # botocore's per-request attempts (first try included)
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    # Incomplete multipart uploads of the key older than this are aborted before a new upload:
    # younger ones may belong to a publisher running right now (a bucket lifecycle rule
    # "AbortIncompleteMultipartUpload" is the production-grade backstop).
    stale_upload_grace: float = 600.0
    copy_threshold: int = 512 * MiB  # single CopyObject below, parallel UploadPartCopy above


def stale_uploads(
    uploads: Iterable[MultipartUploadTypeDef], key: str, now: datetime, grace: float
) -> list[str]:
    """Upload ids of incomplete multipart uploads of exactly ``key`` initiated > grace s ago."""
    stale: list[str] = []
    for upload in uploads:
        initiated = upload.get("Initiated")
        if upload.get("Key") != key or "UploadId" not in upload:
            continue
        if initiated is not None and (now - initiated).total_seconds() < grace:
            continue
        stale.append(upload["UploadId"])
    return stale


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


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


class S3Connection:
    """One boto3 S3 client, shared by every S3 destination of a run, with a request counter.

    boto3 >= 1.28 reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE and the credential
    chain itself; nothing here overrides them. One client (creating one costs more than a
    request) serves staging and production, and makes server-side copies between them possible.
    """

    def __init__(
        self, session: boto3.session.Session, tuning: S3Tuning, deadline: Deadline | None = None
    ) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.tuning = tuning
        config = Config(
            retries={"mode": tuning.retry_mode, "total_max_attempts": tuning.max_attempts},
            connect_timeout=tuning.connect_timeout,
            read_timeout=tuning.read_timeout,
            max_pool_connections=max(10, tuning.max_concurrency + 2),
        )
        self.client: S3Client = session.client("s3", config=config)
        logger.info(
            "S3 endpoint %s, region %s",
            redact_credentials(str(self.client.meta.endpoint_url)),
            self.client.meta.region_name,
        )
        self._lock = threading.Lock()
        self._requests = 0
        events = self.client.meta.events
        events.register("before-send.s3", self._count_request)
        events.register("needs-retry.s3", _log_retry)
        self.deadline = deadline
        for operation in ("PutObject", "CompleteMultipartUpload", "CopyObject"):
            events.register(f"before-parameter-build.s3.{operation}", _create_only_artifacts)
        # Uploads in flight, by (bucket, key): their bytes are checked before S3 may store them.
        self.sending: dict[tuple[str, str], SentBytes] = {}
        for operation in ("PutObject", "CompleteMultipartUpload"):
            events.register(f"before-parameter-build.s3.{operation}", self._check_sent_bytes)
        events.register("before-parameter-build.s3.UploadPart", self._part_checksum)
        self.upload_config = TransferConfig(
            multipart_threshold=tuning.part_size,
            multipart_chunksize=tuning.part_size,
            max_concurrency=tuning.max_concurrency,
            preferred_transfer_client="classic",
        )
        # Parts are read from one handle into memory (see SentBytes): bound what waits.
        self.upload_config.max_in_memory_upload_chunks = tuning.max_concurrency + 2
        self.copy_config = TransferConfig(
            multipart_threshold=max(tuning.copy_threshold, tuning.part_size),
            multipart_chunksize=max(tuning.copy_threshold // 4, tuning.part_size),
            max_concurrency=tuning.max_concurrency,
            preferred_transfer_client="classic",
        )

    def _check_sent_bytes(self, params: dict[str, Any], **_: Any) -> None:
        """Right before the request that makes an artifact visible: were the right bytes sent?

        Raising here fails the transfer; s3transfer then aborts the multipart upload, so
        nothing appears under the key.
        """
        sent = self._sent(params)
        if sent is None:
            return
        sent.check()
        if "MultipartUpload" not in params:  # PutObject: S3 checks the body against it
            params["ChecksumCRC32"] = sent.stored_checksum
            return
        parts = params["MultipartUpload"].get("Parts", [])
        acknowledged = [part.get("ChecksumCRC32") for part in parts]
        if acknowledged != sent.part_crc32s:
            raise ArtifactError(
                f"{sent.artifact.path}: S3 acknowledged {len(parts)} parts whose CRC32s are not "
                f"those of the {len(sent.part_crc32s)} parts read; nothing was stored: publish "
                "again"
            )

    def _part_checksum(self, params: dict[str, Any], **_: Any) -> None:
        """The part's CRC32 from the pass that hashed it: S3 checks the part body against it,
        and botocore does not read the part a second time to compute it."""
        sent = self._sent(params)
        crc32 = None if sent is None else sent.part_crc32(int(params.get("PartNumber", 0)))
        if crc32 is not None:
            params["ChecksumCRC32"] = crc32

    def _sent(self, params: dict[str, Any]) -> SentBytes | None:
        return self.sending.get((str(params.get("Bucket")), str(params.get("Key"))))

    def _count_request(self, request: Any = None, **_: Any) -> None:
        with self._lock:
            self._requests += 1
        if self.deadline is not None:  # every attempt, botocore's retries included
            method = getattr(request, "method", "request")
            self.deadline.check(f"{method} {redact_credentials(getattr(request, 'url', ''))}")

    @property
    def requests(self) -> int:
        """HTTP requests sent so far, retries included."""
        with self._lock:
            return self._requests


class S3Store(Store):
    """An S3 bucket prefix."""

    def __init__(self, destination: Destination, connection: S3Connection) -> None:
        super().__init__(destination)
        self.connection = connection
        self.client = connection.client
        self.tuning = connection.tuning

    def stat(self, key: str) -> RemoteObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.destination.bucket, Key=key)
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        sha256 = head.get("Metadata", {}).get(SHA256_METADATA)
        if sha256 is None:
            # Not written by mmetools (or by a tool that dropped metadata): try the sidecar.
            sha256 = self._read_sha256_sidecar(key)
        return RemoteObject(
            key=key, sha256=sha256, size=head.get("ContentLength", 0), etag=head.get("ETag", "")
        )

    def _read_sha256_sidecar(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.destination.bucket, Key=key + SHA256_SUFFIX)[
                "Body"
            ].read(4096)
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return parse_sha256_text(body.decode("utf-8", "replace"))

    def read_manifest(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(
                Bucket=self.destination.bucket, Key=key + MANIFEST_SUFFIX
            )
            return bytes(response["Body"].read(MANIFEST_READ_LIMIT))
        except (ClientError, BotoCoreError):
            return None

    def abort_stale_uploads(self, key: str) -> int:
        """Abort incomplete multipart uploads of ``key`` left by an interrupted publish."""
        from botocore.exceptions import ClientError

        listing = self.client.list_multipart_uploads(Bucket=self.destination.bucket, Prefix=key)
        now = datetime.now(timezone.utc)
        aborted = 0
        for upload_id in stale_uploads(
            listing.get("Uploads", []), key, now, self.tuning.stale_upload_grace
        ):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.destination.bucket, Key=key, UploadId=upload_id
                )
                aborted += 1
            except ClientError as e:
                if _error_code(e) != "NoSuchUpload":  # aborted or completed meanwhile
                    raise
        if aborted:
            logger.info("aborted %d stale multipart upload(s) of %s", aborted, key)
        return aborted

    def _put_sidecars(self, artifact: LocalArtifact, key: str) -> None:
        """Both sidecars of the stored ``artifact``, the manifest last (it marks them complete)."""
        tagged = {SIDECAR_SHA256_METADATA: artifact.sha256}
        for suffix, body, content_type in (
            (SHA256_SUFFIX, artifact.sha256_sidecar, "text/plain"),
            (MANIFEST_SUFFIX, artifact.manifest_path.read_bytes(), "application/json"),
        ):
            self.client.put_object(
                Bucket=self.destination.bucket,
                Key=key + suffix,
                Body=body,
                ContentType=content_type,
                Metadata=tagged,
                ChecksumAlgorithm="CRC32",
            )

    def _sidecars_describe(self, key: str, sha256: str) -> bool:
        """True if the manifest sidecar (written last) says it describes ``sha256``."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(
                Bucket=self.destination.bucket, Key=key + MANIFEST_SUFFIX
            )
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return head.get("Metadata", {}).get(SIDECAR_SHA256_METADATA) == sha256

    def repair_sidecars(self, artifact: LocalArtifact, key: str) -> bool:
        if self._sidecars_describe(key, artifact.sha256):
            return False
        logger.warning(
            "%s: sidecars missing or not of this artifact (an interrupted publish): rewriting them",
            self.destination.object_uri(key),
        )
        self._put_sidecars(artifact, key)
        return True

    def _verify_stored(self, key: str, sent: SentBytes) -> None:
        """Read back what S3 stored before any sidecar names it; delete it if it is not ours."""
        head = self.client.head_object(
            Bucket=self.destination.bucket, Key=key, ChecksumMode="ENABLED"
        )
        stored_crc = str(head.get("ChecksumCRC32", ""))
        problems = []
        if head.get("ContentLength") != sent.size:
            problems.append(f"size {head.get('ContentLength')} instead of {sent.size}")
        if head.get("Metadata", {}).get(SHA256_METADATA) != sent.artifact.sha256:
            problems.append("its x-amz-meta-sha256 is not the build's")
        # S3 appends -<parts> to a composite checksum; moto does not.
        expected = sent.stored_checksum
        if stored_crc and stored_crc not in (expected, expected.split("-")[0]):
            problems.append(f"CRC32 {stored_crc} instead of {expected}")
        if not problems:
            return
        self.client.delete_object(Bucket=self.destination.bucket, Key=key)
        raise ArtifactError(
            f"{self.destination.object_uri(key)}: the stored object is not the bytes sent ("
            + "; ".join(problems)
            + "); it was deleted and no sidecar was written: publish again"
        )

    def write(self, artifact: LocalArtifact, key: str, progress: ProgressCallback | None) -> None:
        from boto3.s3.transfer import create_transfer_manager

        self.abort_stale_uploads(key)
        extra_args = {
            "Metadata": artifact.metadata,
            # CRC32 per part (what `aws s3 cp` sends), computed over the same bytes as the
            # SHA-256 that is checked against the build; S3 keeps their composite checksum.
            "ChecksumAlgorithm": "CRC32",
            "ContentType": "application/gzip",
        }
        sent = SentBytes(artifact, self.connection.tuning.part_size)
        where = (self.destination.bucket, key)
        self.connection.sending[where] = sent
        try:
            with (
                self._translate_precondition(key),
                create_transfer_manager(self.client, self.connection.upload_config) as manager,
            ):
                future = manager.upload(
                    sent,  # type: ignore[arg-type]  # a readable, non-seekable file object
                    self.destination.bucket,
                    key,
                    extra_args=extra_args,
                    subscribers=_subscribers(size=artifact.size, progress=progress),
                )
                future.result()
        finally:
            del self.connection.sending[where]
            sent.close()
        self._verify_stored(key, sent)
        self._put_sidecars(artifact, key)

    def can_copy_from(self, source: Store) -> bool:
        # Same session and environment means the same S3 service: CopyObject works across buckets.
        return isinstance(source, S3Store)

    def copy_from(
        self, source: Store, remote: RemoteObject, key: str, artifact: LocalArtifact
    ) -> None:
        from boto3.s3.transfer import create_transfer_manager

        assert isinstance(source, S3Store)
        bucket = self.destination.bucket
        self.abort_stale_uploads(key)
        extra_args: dict[str, Any] = {
            "Metadata": artifact.metadata,
            "MetadataDirective": "REPLACE",
            "ChecksumAlgorithm": "CRC32",
            "ContentType": "application/gzip",
        }
        if remote.etag:
            # Copy exactly the object whose sha256 was just checked, not a later replacement.
            extra_args["CopySourceIfMatch"] = remote.etag
        with (
            self._translate_precondition(key),
            create_transfer_manager(self.client, self.connection.copy_config) as manager,
        ):
            future = manager.copy(
                copy_source={"Bucket": source.destination.bucket, "Key": remote.key},
                bucket=bucket,
                key=key,
                extra_args=extra_args,
                subscribers=_subscribers(size=remote.size, progress=None),
                source_client=source.client,
            )
            future.result()
        # Sidecars after the artifact: staging's, copied server-side, if they describe these
        # bytes (production then describes exactly what staging tested), else the local build's.
        if not source._sidecars_describe(remote.key, artifact.sha256):
            self._put_sidecars(artifact, key)
            return
        for suffix in (SHA256_SUFFIX, MANIFEST_SUFFIX):  # the manifest last
            self.client.copy_object(
                Bucket=bucket,
                Key=key + suffix,
                CopySource={"Bucket": source.destination.bucket, "Key": remote.key + suffix},
                ChecksumAlgorithm="CRC32",
            )

    @contextlib.contextmanager
    def _translate_precondition(self, key: str) -> Iterator[None]:
        """Turn S3's 412 on a create-only write into ObjectExists with what the key now holds.

        A 412 also answers a retried request whose first attempt succeeded but whose response
        was lost: the caller then finds its own bytes under the key and treats that as success.
        """
        try:
            yield
        except Exception as e:
            if not _is_precondition_on_key(e):
                raise
            raise ObjectExists(key, self.stat(key)) from e


def _log_retry(
    attempts: int = 0, caught_exception: Exception | None = None, response: Any = None, **_: Any
) -> None:
    """botocore's own retries, shown as they happen (botocore decides; this only reports)."""
    if caught_exception is not None:
        reason = f"{type(caught_exception).__name__}: {caught_exception}"
    elif response is not None and response[0].status_code >= 500:
        reason = f"HTTP {response[0].status_code}"
    else:
        return
    logger.warning("S3 request attempt %d failed (%s)", attempts, redact_credentials(reason))


def _is_precondition_on_key(error: Exception) -> bool:
    """A 412 of our create-only condition (not of a copy-source condition)."""
    if _error_code(error) not in ("PreconditionFailed", "412"):
        return False
    condition = str(getattr(error, "response", {}).get("Error", {}).get("Condition", ""))
    return "copy-source" not in condition.lower()


def _create_only_artifacts(params: dict[str, Any], **_: Any) -> None:
    """botocore hook: every write of an artifact key is conditional on the key being absent.

    s3transfer does not pass IfNoneMatch through its allow-list, so it is added here, at the
    request level, for PutObject, CompleteMultipartUpload and CopyObject of ``*.tar.gz`` keys.
    """
    if str(params.get("Key", "")).endswith(ARTIFACT_SUFFIX):
        params.setdefault("IfNoneMatch", "*")


def _subscribers(size: int, progress: ProgressCallback | None) -> list[Any]:
    from s3transfer.subscribers import BaseSubscriber

    class _Subscriber(BaseSubscriber):
        def on_queued(self, future: Any, **_: Any) -> None:
            # Known size: saves s3transfer a stat (upload) or a HEAD of the source (copy).
            future.meta.provide_transfer_size(size)

        def on_progress(self, future: Any, bytes_transferred: int, **_: Any) -> None:
            if progress is not None:
                progress(bytes_transferred)

    return [_Subscriber()]


# --------------------------------------------------------------------------------------------
# Folders


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
        sha_path = final.with_name(final.name + SHA256_SUFFIX)
        manifest_path = final.with_name(final.name + MANIFEST_SUFFIX)
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
        _write_file_atomically(final.with_name(final.name + SHA256_SUFFIX), artifact.sha256_sidecar)
        _write_file_atomically(
            final.with_name(final.name + MANIFEST_SUFFIX), artifact.manifest_path.read_bytes()
        )
        _fsync_dir(final.parent)

    def read_manifest(self, key: str) -> bytes | None:
        try:
            with (self.root / (key + MANIFEST_SUFFIX)).open("rb") as stream:
                return stream.read(MANIFEST_READ_LIMIT)
        except OSError:
            return None

    def write(self, artifact: LocalArtifact, key: str, progress: ProgressCallback | None) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_temps(final)
        temp = _temp_name(final)
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
                _link_create_only(temp, final)
            except FileExistsError as e:
                # Lost the race: the winner writes the sidecars, this publisher writes none.
                raise ObjectExists(key, self.stat(key)) from e
            _fsync_dir(final.parent)
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


def _temp_name(final: Path) -> Path:
    # The pid in the name lets a later run recognise temps of dead publishers.
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"


def _remove_orphaned_temps(final: Path) -> None:
    """Delete temp files of ``final`` left by publishers that were killed (their pid is gone)."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.tmp-(\d+)-[0-9a-f]+$")
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            logger.info("removing %s, left by an interrupted publish", entry)
            entry.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_file_atomically(path: Path, data: bytes) -> None:
    temp = _temp_name(path)
    try:
        with temp.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _link_create_only(temp: Path, final: Path) -> None:
    """Give ``temp`` the name ``final`` unless ``final`` exists: a hard link never overwrites."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A filesystem without hard links: check, then rename (a small race window remains).
        if final.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from e
        os.replace(temp, final)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(destination: Destination, connection: Callable[[], S3Connection]) -> Store:
    if destination.kind == "s3":
        return S3Store(destination, connection())
    return FileStore(destination)


def describe_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


__all__ = [
    "Deadline",
    "Destination",
    "FileStore",
    "LocalArtifact",
    "ObjectExists",
    "RemoteObject",
    "S3Connection",
    "S3Store",
    "S3Tuning",
    "Store",
    "describe_size",
    "open_store",
    "parse_destination",
    "parse_sha256_text",
    "redact_credentials",
    "stale_uploads",
]
