"""Where published artifacts live: an S3 bucket prefix or a folder, behind one small interface.

Both stores keep the same layout and the same guarantees:

- ``<key>`` is the artifact; ``<key>.sha256`` and ``<key>.manifest.json`` are its sidecars;
- the sidecars are written first and the artifact last, so whoever sees the artifact also sees
  them; on S3 the artifact additionally carries its sha256 as object metadata (``x-amz-meta-sha256``),
  which is atomic with the object itself;
- the artifact is written create-only (S3 ``If-None-Match: *``; a hard link for folders), so two
  publishers can never overwrite each other, and it appears all at once or not at all (S3
  multipart uploads are invisible until completed; folders get a temp file then a link).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmetools.errors import ArtifactError, ConfigError
from mmetools.manifest import MANIFEST_SUFFIX, SHA256_SUFFIX, sha256_line

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import MultipartUploadTypeDef

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
ARTIFACT_SUFFIX = ".tar.gz"
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256

DestinationKind = Literal["s3", "file"]
ProgressCallback = Callable[[int], None]

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


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
        """Sidecars, then the artifact, create-only. Raises ObjectExists if ``key`` got taken."""

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


class S3Connection:
    """One boto3 S3 client, shared by every S3 destination of a run, with a request counter.

    boto3 >= 1.28 reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE and the credential
    chain itself; nothing here overrides them. One client (creating one costs more than a
    request) serves staging and production, and makes server-side copies between them possible.
    """

    def __init__(self, session: boto3.session.Session, tuning: S3Tuning) -> None:
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
            "S3 endpoint %s, region %s", self.client.meta.endpoint_url, self.client.meta.region_name
        )
        self._lock = threading.Lock()
        self._requests = 0
        events = self.client.meta.events
        events.register("before-send.s3", self._count_request)
        for operation in ("PutObject", "CompleteMultipartUpload", "CopyObject"):
            events.register(f"before-parameter-build.s3.{operation}", _create_only_artifacts)
        self.upload_config = TransferConfig(
            multipart_threshold=tuning.part_size,
            multipart_chunksize=tuning.part_size,
            max_concurrency=tuning.max_concurrency,
            preferred_transfer_client="classic",
        )
        self.copy_config = TransferConfig(
            multipart_threshold=max(tuning.copy_threshold, tuning.part_size),
            multipart_chunksize=max(tuning.copy_threshold // 4, tuning.part_size),
            max_concurrency=tuning.max_concurrency,
            preferred_transfer_client="classic",
        )

    def _count_request(self, **_: Any) -> None:
        with self._lock:
            self._requests += 1

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

    def _put_sha256_sidecar(self, key: str, sha256: str) -> None:
        self.client.put_object(
            Bucket=self.destination.bucket,
            Key=key + SHA256_SUFFIX,
            Body=sha256_line(sha256, key.rsplit("/", 1)[-1]).encode(),
            ContentType="text/plain",
            ChecksumAlgorithm="SHA256",
        )

    def _put_sidecars(self, artifact: LocalArtifact, key: str) -> str:
        """Write both sidecars; returns the ETag of the manifest written."""
        self._put_sha256_sidecar(key, artifact.sha256)
        response = self.client.put_object(
            Bucket=self.destination.bucket,
            Key=key + MANIFEST_SUFFIX,
            Body=artifact.manifest_path.read_bytes(),
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )
        return response.get("ETag", "")

    def _repair_sidecars(self, key: str, winner: RemoteObject | None, manifest_etag: str) -> None:
        """After losing a create-only race to different bytes, undo what our sidecars changed.

        Our sidecars went up before the artifact, so they may have replaced the winner's: the
        winner's sha256 is known (object metadata) and is written back; the winner's manifest
        is not, so ours is removed if it is still there (missing is better than wrong).
        """
        from botocore.exceptions import ClientError

        if winner is None or winner.sha256 is None:
            return
        self._put_sha256_sidecar(key, winner.sha256)
        try:
            head = self.client.head_object(
                Bucket=self.destination.bucket, Key=key + MANIFEST_SUFFIX
            )
        except ClientError:
            return
        if manifest_etag and head.get("ETag") == manifest_etag:
            self.client.delete_object(Bucket=self.destination.bucket, Key=key + MANIFEST_SUFFIX)
            logger.warning(
                "%s: lost a publish race; removed this run's manifest sidecar (the winner's "
                "was overwritten before the race was decided)",
                self.destination.object_uri(key),
            )

    def write(self, artifact: LocalArtifact, key: str, progress: ProgressCallback | None) -> None:
        from boto3.s3.transfer import create_transfer_manager

        self.abort_stale_uploads(key)
        manifest_etag = self._put_sidecars(artifact, key)
        extra_args = {
            "Metadata": artifact.metadata,
            "ChecksumAlgorithm": "SHA256",  # per-part SHA-256, checked by S3 on arrival
            "ContentType": "application/gzip",
        }
        with (
            self._translate_precondition(key),
            create_transfer_manager(self.client, self.connection.upload_config) as manager,
        ):
            future = manager.upload(
                str(artifact.path),
                self.destination.bucket,
                key,
                extra_args=extra_args,
                subscribers=_subscribers(size=artifact.size, progress=progress),
            )
            try:
                future.result()
            except Exception as e:
                if _is_precondition_on_key(e):
                    winner = self.stat(key)
                    if winner is None or winner.sha256 != artifact.sha256:
                        self._repair_sidecars(key, winner, manifest_etag)
                raise

    def can_copy_from(self, source: Store) -> bool:
        # Same session and environment means the same S3 service: CopyObject works across buckets.
        return isinstance(source, S3Store)

    def copy_from(
        self, source: Store, remote: RemoteObject, key: str, artifact: LocalArtifact
    ) -> None:
        from boto3.s3.transfer import create_transfer_manager
        from botocore.exceptions import ClientError

        assert isinstance(source, S3Store)
        bucket = self.destination.bucket
        self.abort_stale_uploads(key)
        # Sidecars come from staging too, so production describes exactly what staging tested.
        for suffix in (SHA256_SUFFIX, MANIFEST_SUFFIX):
            try:
                self.client.copy_object(
                    Bucket=bucket,
                    Key=key + suffix,
                    CopySource={"Bucket": source.destination.bucket, "Key": remote.key + suffix},
                    ChecksumAlgorithm="SHA256",
                )
            except ClientError as e:
                if _error_code(e) not in ("404", "NoSuchKey"):
                    raise
                self._put_sidecars(artifact, key)
                break
        extra_args: dict[str, Any] = {
            "Metadata": artifact.metadata,
            "MetadataDirective": "REPLACE",
            "ChecksumAlgorithm": "SHA256",
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
        try:
            sha256 = parse_sha256_text(
                (self.root / (key + SHA256_SUFFIX)).read_text(encoding="utf-8", errors="replace")
            )
        except FileNotFoundError:
            sha256 = None
        if sha256 is None:
            # An artifact without its sidecar (copied in by hand): its bytes are the truth.
            with path.open("rb") as f:
                sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        return RemoteObject(key=key, sha256=sha256, size=size)

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
        _write_file_atomically(final.parent / (final.name + SHA256_SUFFIX), artifact.sha256_sidecar)
        _write_file_atomically(
            final.parent / (final.name + MANIFEST_SUFFIX), artifact.manifest_path.read_bytes()
        )
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
                raise ObjectExists(key, self._after_lost_race(artifact, final, key)) from e
            _fsync_dir(final.parent)
        finally:
            temp.unlink(missing_ok=True)

    def _after_lost_race(self, artifact: LocalArtifact, final: Path, key: str) -> RemoteObject:
        """Another publisher linked ``final`` first. Our sidecars went in before, so they may
        describe our bytes, not the winner's: hash the winner, put its sha256 back and drop our
        manifest (the winner's is lost; missing is better than wrong)."""
        with final.open("rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        if sha256 != artifact.sha256:
            _write_file_atomically(
                final.with_name(final.name + SHA256_SUFFIX),
                sha256_line(sha256, final.name).encode(),
            )
            manifest = final.with_name(final.name + MANIFEST_SUFFIX)
            try:
                if manifest.read_bytes() == artifact.manifest_path.read_bytes():
                    manifest.unlink()
            except FileNotFoundError:
                pass
        return RemoteObject(key=key, sha256=sha256, size=final.stat().st_size)


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
    "stale_uploads",
]
