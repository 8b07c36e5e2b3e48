"""An S3 bucket prefix as a store: one shared client per run (``S3Connection``), create-only
writes of artifacts (``If-None-Match: *``), uploads whose bytes are checked part by part before S3
may store them, server-side copies between buckets, and sidecars tagged with the sha256 of the
artifact they describe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from mmetools.build.files import ARTIFACT_SUFFIX, StoredFiles
from mmetools.build.verified import DEFAULT_PART_SIZE, LocalArtifact, MiB, parse_sha256_text
from mmetools.core.errors import ArtifactError
from mmetools.core.redaction import register_boto_credentials
from mmetools.release.storage.base import (
    MANIFEST_READ_LIMIT,
    Deadline,
    ObjectExists,
    ProgressCallback,
    RemoteObject,
    Store,
)
from mmetools.release.storage.destination import Destination, redact_credentials
from mmetools.release.storage.s3_checksums import SentBytes
from mmetools.release.storage.s3_content import content_problem

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import MultipartUploadTypeDef

logger = logging.getLogger(__name__)

SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256
SIDECAR_SHA256_METADATA = "artifact-sha256"  # on sidecars: the artifact they describe


def object_metadata(artifact: LocalArtifact) -> dict[str, str]:
    """The artifact object's metadata: its sha256 (atomic with the object), model and version."""
    return {
        SHA256_METADATA: artifact.sha256,
        "model": artifact.model,
        "version": str(artifact.version),
    }


@dataclass(frozen=True)
class S3Tuning:
    part_size: int = DEFAULT_PART_SIZE
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
        # What boto3 resolved (a profile, SSO, a web identity: in no variable) is masked in
        # every log line and message from now on.
        register_boto_credentials(session.get_credentials())
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

        try:  # with S3's checksum of the stored bytes (content_problem), in the same request
            head = self.client.head_object(
                Bucket=self.destination.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        sha256 = head.get("Metadata", {}).get(SHA256_METADATA)
        if sha256 is None:
            # Not written by mmetools (or by a tool that dropped metadata): try the sidecar.
            sha256 = self._read_sha256_sidecar(key)
        return RemoteObject(key=key, sha256=sha256, size=head.get("ContentLength", 0),
                            etag=head.get("ETag", ""), checksum_crc32=head.get("ChecksumCRC32", ""))  # fmt: skip

    def content_problem(self, remote: RemoteObject, artifact: LocalArtifact) -> str | None:
        """By S3's checksum of the stored bytes and their size, else a read (s3_content.py)."""
        if remote.sha256 != artifact.sha256:
            return f"its x-amz-meta-sha256 is {remote.sha256}"
        part_sizes = (self.tuning.part_size, self.connection.copy_config.multipart_chunksize)
        return content_problem(self.client, self.destination.bucket, remote, artifact, part_sizes)

    def _read_sha256_sidecar(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(
                Bucket=self.destination.bucket, Key=StoredFiles(key).sha256
            )["Body"].read(4096)
        except ClientError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return parse_sha256_text(body.decode("utf-8", "replace"))

    def read_manifest(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(
                Bucket=self.destination.bucket, Key=StoredFiles(key).manifest
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
        stored = StoredFiles(key)
        for sidecar_key, body, content_type in (
            (stored.sha256, artifact.sha256_sidecar, "text/plain"),
            (stored.manifest, artifact.manifest_path.read_bytes(), "application/json"),
        ):
            self.client.put_object(
                Bucket=self.destination.bucket,
                Key=sidecar_key,
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
                Bucket=self.destination.bucket, Key=StoredFiles(key).manifest
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
            "Metadata": object_metadata(artifact),
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
            "Metadata": object_metadata(artifact),
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
        targets, sources = StoredFiles(key).sidecars, StoredFiles(remote.key).sidecars
        for target_key, source_key in zip(targets, sources):  # the manifest last
            self.client.copy_object(
                Bucket=bucket,
                Key=target_key,
                CopySource={"Bucket": source.destination.bucket, "Key": source_key},
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


__all__ = [
    "Deadline",
    "S3Connection",
    "S3Store",
    "S3Tuning",
    "object_metadata",
    "stale_uploads",
]
