"""Staging housekeeping: the staging folders of branches that are gone or merged
(``mmetools staging prune``).

Staging holds one folder per branch, ``<staging>/<branch-slug>/`` (publish/branches.py). A folder
is pruned when its branch is no longer known to git (no local branch and no remote-tracking
branch of that name) or when every ref of that name is merged into the production branch
(``origin/<production branch>``, else the local one: the same base as ``ci/pipeline``). Never
pruned: the production branch's own staging folder, a folder whose name is not a branch slug
(it was not made by mmetools), a folder that is or holds the production destination, and
anything outside the staging destination. A branch with no commit of its own (its tip is in the
production branch) counts as merged: its staging folder holds nothing production's does not.

:func:`plan_prune` only reads; :func:`prune` deletes what a plan marked (a folder: the tree; S3:
every object under the folder's prefix, and the incomplete multipart uploads there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmetools.core import process
from mmetools.core.errors import MmetoolsError, PublishError, UsageError
from mmetools.core.settings import Settings
from mmetools.core.tree import remove_tree
from mmetools.release.publish import branch_from_slug, branch_slug, destinations
from mmetools.release.storage import Destination, S3Connection, S3Tuning, redact_credentials

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

Verdict = Literal["keep", "prune"]
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


@dataclass(frozen=True)
class KnownBranches:
    """What git knows: branch names (local, and remote-tracking without the remote's name) and
    those merged into the production ref."""

    names: frozenset[str]
    merged: frozenset[str]
    production_ref: str
    remote_tracking: int  # how many remote-tracking branches were seen (0: maybe never fetched)


@dataclass(frozen=True)
class StagingFolder:
    slug: str
    branch: str | None  # None: the folder name is no branch slug
    uri: str
    key: str  # S3: the folder's key prefix (no trailing "/"); folders: its name
    verdict: Verdict
    reason: str


def _git(repo: Path, *args: str) -> str:
    return process.run(["git", "-C", str(repo), *args], context="git").output


def known_branches(repo: Path, production_branch: str) -> KnownBranches:
    """Branch names git knows in ``repo`` and which are merged into the production branch."""
    production_ref = ""
    for ref in (f"refs/remotes/origin/{production_branch}", f"refs/heads/{production_branch}"):
        try:
            _git(repo, "rev-parse", "--verify", "-q", ref)
        except MmetoolsError:
            continue
        production_ref = ref
        break
    if not production_ref:
        raise UsageError(
            f"{repo}: no branch origin/{production_branch} or {production_branch} here: cannot "
            "tell merged branches (run in a clone of the repository that publishes)"
        )
    fmt = "--format=%(refname)"
    refs = _git(repo, "for-each-ref", fmt, "refs/heads", "refs/remotes").split()
    merged_refs = set(
        _git(repo, "for-each-ref", fmt, f"--merged={production_ref}", "refs/heads", "refs/remotes")
        .split()
    )  # fmt: skip
    names: set[str] = set()
    unmerged: set[str] = set()
    remote_tracking = 0
    for ref in refs:
        if ref.startswith("refs/heads/"):
            name = ref.removeprefix("refs/heads/")
        else:
            parts = ref.removeprefix("refs/remotes/").split("/", 1)
            if len(parts) < 2 or parts[1] == "HEAD":
                continue
            name = parts[1]
            remote_tracking += 1
        names.add(name)
        if ref not in merged_refs:
            unmerged.add(name)
    return KnownBranches(
        frozenset(names), frozenset(names - unmerged), production_ref, remote_tracking
    )


def _client(session: boto3.session.Session | None) -> S3Client:
    import boto3 as boto3_module

    return S3Connection(session or boto3_module.session.Session(), S3Tuning()).client


def _folder_names(staging: Destination, client: S3Client | None) -> list[str]:
    if staging.kind == "file":
        assert staging.path is not None
        if not staging.path.is_dir():
            return []
        return sorted(p.name for p in staging.path.iterdir() if p.is_dir())
    assert client is not None
    prefix = f"{staging.prefix}/" if staging.prefix else ""
    names = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=staging.bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            names.append(str(common["Prefix"])[len(prefix) :].rstrip("/"))
    return sorted(names)


def _holds_production(staging: Destination, production: Destination, name: str) -> bool:
    """True when the folder ``name`` of staging is the production destination or holds it."""
    if staging.kind != production.kind:
        return False
    if staging.kind == "file":
        assert staging.path is not None and production.path is not None
        folder = staging.path / name
        return production.path == folder or folder in production.path.parents
    if staging.bucket != production.bucket:
        return False
    key = staging.key(name)
    return production.prefix == key or production.prefix.startswith(f"{key}/")


def _verdict(
    name: str, branch: str | None, known: KnownBranches, production_branch: str
) -> tuple[Verdict, str]:
    if name == branch_slug(production_branch):
        return "keep", f"the production branch's staging ({production_branch})"
    if branch is None:
        return "keep", "not a branch folder (its name is no branch slug)"
    if branch in known.merged:
        return "prune", f"merged into {known.production_ref.removeprefix('refs/remotes/')}"
    if branch in known.names:
        return "keep", "the branch exists and is not merged"
    return "prune", "no such branch (local or remote-tracking)"


def _branch_of(name: str) -> str | None:
    try:
        branch = branch_from_slug(name)
        return branch if branch_slug(branch) == name else None
    except (ValueError, UnicodeError, MmetoolsError):
        return None


def plan_prune(
    settings: Settings,
    known: KnownBranches,
    *,
    session: boto3.session.Session | None = None,
) -> list[StagingFolder]:
    """Every folder of the staging destination with its verdict (nothing is deleted)."""
    if not settings.publish.namespace_staging_by_branch:
        return []
    staging, production = destinations(settings)
    production_branch = settings.publish.production_branch
    client = _client(session) if staging.kind == "s3" else None
    try:
        names = _folder_names(staging, client)
    except Exception as e:  # botocore's errors, imported lazily
        raise PublishError(
            f"{staging.uri}: cannot list the staging folders: {redact_credentials(str(e))}"
        ) from e
    folders = []
    for name in names:
        branch = _branch_of(name)
        if _holds_production(staging, production, name):
            verdict: Verdict = "keep"
            reason = f"it is or holds the production destination {production.uri}"
        else:
            verdict, reason = _verdict(name, branch, known, production_branch)
        key = staging.key(name)
        uri = staging.object_uri(key) + "/"
        folders.append(StagingFolder(name, branch, uri, key, verdict, reason))
    return folders


def _delete_s3_prefix(client: S3Client, bucket: str, key: str) -> int:
    prefix = f"{key}/"
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [str(item["Key"]) for item in page.get("Contents", [])]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}  # type: ignore[typeddict-item]
            )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise PublishError(
                    f"s3://{bucket}/{first.get('Key')}: cannot delete: {first.get('Code')} "
                    f"{first.get('Message')} ({len(errors)} object(s) not deleted)"
                )
            deleted += len(batch)
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(
            Bucket=bucket, Key=str(upload["Key"]), UploadId=str(upload["UploadId"])
        )
    return deleted


def prune(
    folders: list[StagingFolder],
    settings: Settings,
    *,
    session: boto3.session.Session | None = None,
) -> list[StagingFolder]:
    """Delete the folders marked ``prune``; returns them. Only folders directly under the
    staging destination are touched, and production never (checked again here)."""
    staging, production = destinations(settings)
    chosen = [f for f in folders if f.verdict == "prune"]
    client = _client(session) if staging.kind == "s3" and chosen else None
    for folder in chosen:
        if "/" in folder.slug or folder.slug in ("", ".", ".."):
            raise PublishError(f"{folder.uri}: not a folder directly under {staging.uri}")
        if _holds_production(staging, production, folder.slug):
            raise PublishError(f"{folder.uri}: holds the production destination: not deleted")
        if staging.kind == "file":
            assert staging.path is not None
            path = staging.path / folder.slug
            if path.is_symlink():
                raise PublishError(f"{folder.uri}: a symbolic link, not deleted")
            remove_tree(path)
            logger.info("deleted %s", folder.uri)
        else:
            assert client is not None
            try:
                count = _delete_s3_prefix(client, staging.bucket, folder.key)
            except PublishError:
                raise
            except Exception as e:  # botocore's errors, imported lazily
                raise PublishError(
                    f"{folder.uri}: cannot delete: {redact_credentials(str(e))}"
                ) from e
            logger.info("deleted %s (%d objects)", folder.uri, count)
    return chosen


__all__ = ["KnownBranches", "StagingFolder", "known_branches", "plan_prune", "prune"]
