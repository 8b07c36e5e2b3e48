"""Where a local endpoint's models come from: ``<prefix>/<TargetModel>`` of a publish destination
(``s3://bucket/prefix`` on S3 or moto, ``file:`` folders), with a disk copy as SageMaker keeps
one on the instance's storage volume.

A disk copy is reused only while the object it was downloaded from is still there unchanged (a
HEAD, or a stat for folders, before every load): a model deleted from the prefix is not loaded
again, and one overwritten in place is downloaded again (AWS asks never to do that).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mmetools.core.errors import UsageError
from mmetools.release.storage import Destination, S3Connection, S3Tuning, parse_destination
from mmetools.serving.cache import LoadFailed, ModelMissing
from mmetools.core.tree import files_named, remove_tree

logger = logging.getLogger(__name__)

# The service model's TargetModelHeader: 1-1024 characters, first one not blank, printable.
TARGET_MODEL_MAX = 1024
_PRINTABLE = re.compile(r"\A\S[^\x00-\x1f\x7f]*\Z")


def target_model_problem(target_model: str) -> str | None:
    """Why ``target_model`` cannot name an object under the prefix, or None."""
    if not target_model or len(target_model) > TARGET_MODEL_MAX:
        return f"TargetModel must have 1 to {TARGET_MODEL_MAX} characters"
    if not _PRINTABLE.match(target_model):
        return "TargetModel must be printable characters and not start with a blank"
    parts = PurePosixPath(target_model).parts
    if target_model.startswith("/") or any(p in ("..", ".") for p in parts):
        return "TargetModel is a path relative to the endpoint's prefix, without '.' or '..'"
    return None


@dataclass(frozen=True)
class SourceObject:
    key: str
    version: str  # what changes when the object changes: ETag, or size + mtime of a file
    size: int


@dataclass(frozen=True)
class Fetched:
    path: Path
    downloaded: bool  # False: the disk copy was reused
    seconds: float


class ArtifactSource:
    """The artifacts under one destination, fetched into ``disk`` (one copy per version)."""

    def __init__(self, destination: Destination, disk: Path, session: Any = None) -> None:
        self.destination = destination
        self.disk = disk
        self._session = session
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, root: Path, disk: Path) -> ArtifactSource:
        try:
            destination = parse_destination(uri, root, "--models-from")
        except Exception as e:
            raise UsageError(str(e)) from e
        return cls(destination, disk)

    @property
    def uri(self) -> str:
        return self.destination.uri

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                session = self._session or boto3.session.Session()
                self._client = S3Connection(session, S3Tuning()).client
            return self._client

    def stat(self, target_model: str) -> SourceObject | None:
        """The object of ``target_model`` now, or None when there is none."""
        key = self.destination.key(target_model)
        if self.destination.kind == "file":
            assert self.destination.path is not None
            path = self.destination.path / key
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not path.is_file():
                return None
            return SourceObject(key, f"{info.st_size}-{info.st_mtime_ns}", info.st_size)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self._s3().head_object(Bucket=self.destination.bucket, Key=key)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise LoadFailed(target_model, f"{self._where(key)}: {e}", 500) from e
        except BotoCoreError as e:
            raise LoadFailed(target_model, f"{self._where(key)}: {e}", 500) from e
        return SourceObject(key, str(head.get("ETag", "")), int(head.get("ContentLength", 0)))

    def _where(self, key: str) -> str:
        return self.destination.object_uri(key)

    def fetch(self, target_model: str) -> Fetched:
        """The artifact on local disk: the disk copy when the object is unchanged, else a fresh
        download. ModelMissing when the object is gone (its disk copies are dropped)."""
        begin = time.perf_counter()
        found = self.stat(target_model)
        folder = self.disk / hashlib.sha256(target_model.encode()).hexdigest()[:24]
        if found is None:
            remove_tree(folder, ignore_errors=True)
            bucket = self.destination.bucket or str(self.destination.path)
            raise ModelMissing(
                target_model,
                f"Failed to download model data(bucket: {bucket}, key: "
                f"{self.destination.key(target_model)}). Please ensure that there is an object "
                "located at the URL and that the role passed to CreateModel has permissions to "
                "download the model.",
            )
        version = hashlib.sha256(found.version.encode()).hexdigest()[:16]
        copy = folder / version / PurePosixPath(target_model).name
        if copy.is_file():
            return Fetched(copy, False, time.perf_counter() - begin)
        remove_tree(folder, ignore_errors=True)  # older versions
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + ".part")
        try:
            if self.destination.kind == "file":
                assert self.destination.path is not None
                shutil.copyfile(self.destination.path / found.key, partial)
            else:
                from botocore.exceptions import BotoCoreError, ClientError

                try:
                    self._s3().download_file(self.destination.bucket, found.key, str(partial))
                except (BotoCoreError, ClientError) as e:
                    raise ModelMissing(
                        target_model,
                        f"Failed to download model data ({self._where(found.key)}): {e}",
                    ) from e
            partial.rename(copy)
        except FileNotFoundError as e:  # deleted between the stat and the copy
            raise ModelMissing(target_model, f"{self._where(found.key)}: gone: {e}") from e
        finally:
            partial.unlink(missing_ok=True)
        seconds = time.perf_counter() - begin
        logger.info(
            "downloaded %s (%d bytes) in %.2f s", self._where(found.key), found.size, seconds
        )
        return Fetched(copy, True, seconds)

    def list_models(self) -> list[str]:
        """Every ``*.tar.gz`` TargetModel under the prefix (for load tests with --prefix)."""
        if self.destination.kind == "file":
            assert self.destination.path is not None
            root = self.destination.path
            return [p.relative_to(root).as_posix() for p in files_named(root, ".tar.gz")]
        prefix = self.destination.prefix + "/" if self.destination.prefix else ""
        paginator = self._s3().get_paginator("list_objects_v2")
        names = [
            str(item["Key"])[len(prefix) :]
            for page in paginator.paginate(Bucket=self.destination.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return sorted(n for n in names if n.endswith(".tar.gz"))
