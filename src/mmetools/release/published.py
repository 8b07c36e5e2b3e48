"""Published versions of a model: find the one a candidate replaces, and fetch it.

Destinations are the publish destinations (:mod:`mmetools.release.publish`): staging holds
``<prefix>/<branch-slug>/<name>_<version>.tar.gz`` (when staging is namespaced by branch),
production ``<prefix>/<name>_<version>.tar.gz``. The previous version of a candidate is the
highest published version below the candidate's; a fetched artifact must match the ``.sha256``
published beside it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmetools.core.errors import ArtifactError, PublishError, UsageError
from mmetools.build.files import ARTIFACT_SUFFIX, ArtifactFiles, StoredFiles
from mmetools.model.folder import ARTIFACT_NAME_PATTERN, parse_artifact_name
from mmetools.release.publish.branches import branch_slug
from mmetools.release.publish.plan import destinations
from mmetools.core.settings import Settings
from mmetools.release.storage import Destination, S3Connection, S3Tuning
from mmetools.release.storage import parse_sha256_text, redact_credentials

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

Against = Literal["auto", "staging", "production"]
AGAINST_CHOICES = ("auto", "staging", "production")


@dataclass(frozen=True)
class PublishedVersion:
    """One published artifact: where it is (``role`` staging, production, or a local path)."""

    role: str
    model: str
    version: int
    uri: str
    destination: Destination | None = None
    key: str = ""
    path: Path | None = None  # a local artifact given as --against PATH

    @property
    def artifact_name(self) -> str:
        return ArtifactFiles(self.model, self.version).tarball


def s3_client_for(session: boto3.session.Session | None) -> S3Client:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return S3Connection(session or boto3.session.Session(), S3Tuning()).client
    except BotoCoreError as e:
        raise PublishError(f"cannot set up S3 access: {e}") from e


def versions_in(
    destination: Destination, folder_key: str, model: str, client: S3Client | None
) -> Iterator[tuple[int, str]]:
    """(version, key) of every ``<model>_<version>.tar.gz`` directly under ``folder_key``."""
    prefix = destination.key(folder_key, f"{model}_")
    if destination.kind == "file":
        assert destination.path is not None
        folder = (destination.path / prefix).parent
        names = (
            [p.name for p in folder.glob(f"{model}_*{ARTIFACT_SUFFIX}")] if folder.is_dir() else []
        )
        parent = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        keys = [parent + name for name in names]
    else:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            assert client is not None
            paginator = client.get_paginator("list_objects_v2")
            keys = [
                str(item["Key"])
                for page in paginator.paginate(Bucket=destination.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
        except (BotoCoreError, ClientError) as e:
            raise PublishError(
                f"{destination.uri}: cannot list published versions: {type(e).__name__}: "
                f"{redact_credentials(str(e))}"
            ) from e
    for key in keys:
        match = ARTIFACT_NAME_PATTERN.match(key.rsplit("/", 1)[-1])
        if match and match.group("name") == model:
            yield int(match.group("version")), key


def find_previous(
    model: str,
    below: int,
    settings: Settings,
    *,
    against: str = "auto",
    branch: str | None = None,
    session: boto3.session.Session | None = None,
) -> PublishedVersion | None:
    """The highest published version of ``model`` below ``below``, or None when there is none.

    ``against``: ``production``; ``staging`` (the branch's folder when staging is namespaced);
    ``auto`` (what the branch will reach: production when it holds any version of the model,
    else the branch's staging); or a path to a local ``<name>_<version>.tar.gz``. The check that
    ``below`` is above production's highest version is :mod:`mmetools.release.versions`'.
    """
    if against not in AGAINST_CHOICES:
        path = Path(against)
        if not path.is_file():
            raise UsageError(
                f"--against {against!r}: not staging, production or an artifact file "
                f"({', '.join(AGAINST_CHOICES)} or a path to <name>_<version>.tar.gz)"
            )
        ref = parse_artifact_name(path)
        if ref.name != model:
            raise UsageError(f"--against {path}: an artifact of '{ref.name}', not of '{model}'")
        return PublishedVersion("path", ref.name, ref.version, str(path), path=path)
    staging, production = destinations(settings)
    places: list[tuple[str, Destination, str]] = []
    if against in ("auto", "production"):
        places.append(("production", production, ""))
    if against in ("auto", "staging"):
        namespace = ""
        if settings.publish.namespace_staging_by_branch:
            if branch:
                namespace = branch_slug(branch)
            elif against == "staging":
                raise UsageError("--against staging needs --branch (staging is per branch)")
        if namespace or not settings.publish.namespace_staging_by_branch:
            places.append(("staging", staging, namespace))
    client = s3_client_for(session) if any(d.kind == "s3" for _, d, _ in places) else None
    best: PublishedVersion | None = None
    for role, destination, namespace in places:
        if best is not None and against == "auto":
            break  # production holds a version: it is the baseline, staging is not consulted
        for version, key in versions_in(destination, namespace, model, client):
            if version < below and (best is None or version > best.version):
                best = PublishedVersion(
                    role, model, version, destination.object_uri(key), destination, key
                )
    if best is None:
        logger.info("no published version of %s below %d", model, below)
    return best


def fetch_published(
    version: PublishedVersion,
    into: Path,
    *,
    session: boto3.session.Session | None = None,
) -> Path:
    """Copy the published artifact into the folder ``into`` and check it against its sha256."""
    if version.path is not None:
        return version.path
    destination = version.destination
    assert destination is not None
    into.mkdir(parents=True, exist_ok=True)
    target = into / version.artifact_name
    if destination.kind == "file":
        assert destination.path is not None
        source = destination.path / version.key
        shutil.copyfile(source, target)
        sidecar_bytes = (destination.path / StoredFiles(version.key).sha256).read_bytes()
    else:
        from botocore.exceptions import BotoCoreError, ClientError

        client = s3_client_for(session)
        try:
            client.download_file(destination.bucket, version.key, str(target))
            sidecar_bytes = client.get_object(
                Bucket=destination.bucket, Key=StoredFiles(version.key).sha256
            )["Body"].read()
        except (BotoCoreError, ClientError) as e:
            raise PublishError(f"{version.uri}: cannot fetch: {e}") from e
    try:
        sidecar = sidecar_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(
            f"{StoredFiles(version.uri).sha256}: not UTF-8 text (byte {e.start}): a .sha256 "
            "sidecar holds '<sha256 hex>  <file name>'; the published version cannot be checked"
        ) from e
    expected = parse_sha256_text(sidecar)
    with target.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if expected != actual:
        raise ArtifactError(
            f"{version.uri}: the fetched bytes have sha256 {actual}, but its .sha256 says "
            f"{expected or 'nothing readable'}"
        )
    logger.info("fetched %s (%s)", version.uri, version.role)
    return target
