"""One artifact to one target (``PublishStep``): stat, then no-op, refusal, server-side copy or
create-only write, with whole-step retries around botocore's own; and the explanation of a
refusal from the two manifests (``explain_difference``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from mmetools.build.files import StoredFiles
from mmetools.build.manifest import Manifest, member_differences
from mmetools.build.verified import LocalArtifact
from mmetools.core.errors import MmetoolsError, PublishError
from mmetools.core.jsontext import parse_json
from mmetools.model.folder import ENV_ARCHIVE, MODEL_ENV_SUFFIX
from mmetools.release.publish.plan import (
    Action,
    PublishOptions,
    PublishResult,
    PublishTarget,
    Role,
)
from mmetools.release.storage import (
    MiB,
    Destination,
    ObjectExists,
    RemoteObject,
    S3Connection,
    Store,
    describe_size,
    open_store,
)

logger = logging.getLogger(__name__)

ProgressHook = Callable[[PublishTarget, LocalArtifact, int], None]

# AWS error codes worth another try after botocore's own retries gave up.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "OperationAborted",
        "ConditionalRequestConflict",  # 409: a concurrent conditional write; S3 says retry
        "NoSuchUpload",  # the multipart upload was aborted under us (e.g. by a stale-upload sweep)
        "500",
        "502",
        "503",
        "504",
    }
)
_HINTS = {
    "AccessDenied": "check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and the bucket policy",
    "InvalidAccessKeyId": "the access key is unknown to this endpoint: check AWS_PROFILE and "
    "AWS_ENDPOINT_URL",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "NoSuchBucket": "the bucket does not exist: create it or fix the destination URI",
    "NoCredentialsError": "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY",
    "EndpointConnectionError": "is AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 right and reachable?",
    "403": "access denied: publishing needs s3:GetObject, s3:PutObject and s3:ListBucket (without "
    "ListBucket, S3 answers 403 instead of 404 for a missing key)",
}


class Stores:
    """The store of each role, opened once (a feature branch never opens production)."""

    def __init__(
        self, destinations: dict[Role, Destination], connection: Callable[[], S3Connection]
    ) -> None:
        self._destinations = destinations
        self._connection = connection
        self._open: dict[Destination, Store] = {}

    def __getitem__(self, role: Role) -> Store:
        return self.open(role)

    def open(self, role: Role) -> Store:
        destination = self._destinations[role]
        if destination not in self._open:
            self._open[destination] = open_store(destination, self._connection)
        return self._open[destination]


@dataclass(frozen=True)
class PublishStep:
    """Publish one artifact to one target."""

    local: LocalArtifact
    manifest: Manifest  # the build's (without provenance): compared on a refusal
    target: PublishTarget
    stores: Stores
    requests: Callable[[], int]
    staging_target: PublishTarget
    production_branch: bool
    options: PublishOptions
    on_progress: ProgressHook | None

    def run_with_retries(self) -> PublishResult:
        from botocore.exceptions import BotoCoreError, ClientError

        attempts = max(1, self.options.attempts)
        for attempt in range(1, attempts + 1):
            started, requests_before = time.monotonic(), self.requests()
            try:
                action, detail = self._run()
            except (ClientError, BotoCoreError) as e:
                code = _error_code(e)
                if not _is_transient(e) or attempt == attempts:
                    raise PublishError(self._failure_message(e, code, attempt)) from e
                delay = min(
                    self.options.backoff_cap, self.options.backoff_base * 2 ** (attempt - 1)
                )
                delay *= 0.5 + random.random() / 2  # jitter: concurrent publishers spread out
                logger.warning(
                    "%s -> %s: %s (attempt %d of %d), retrying in %.1fs",
                    self.local.name, self.target.uri, code, attempt, attempts, delay,
                )  # fmt: skip
                time.sleep(delay)
                continue
            except OSError as e:  # folders: permission denied, disk full, ...
                reason = e.strerror or type(e).__name__
                where = f" ({e.filename})" if e.filename else ""
                raise PublishError(
                    f"could not publish {self.local.name} to {self.target.uri}: {reason}{where}"
                ) from e
            return PublishResult(
                artifact=self.local.name,
                destination=self.target.uri,
                role=self.target.role,
                action=action,
                sha256=self.local.sha256,
                size=self.local.size,
                seconds=time.monotonic() - started,
                requests=self.requests() - requests_before,
                detail=detail,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure_message(self, error: Exception, code: str, attempt: int) -> str:
        what = str(error).strip().splitlines()[0] if str(error).strip() else code
        message = f"could not publish {self.local.name} to {self.target.uri}: {code}: {what}"
        if attempt > 1:
            message += f" (gave up after {attempt} attempts)"
        hint = _HINTS.get(code)
        if hint:
            message += f"; {hint}"
        return message

    def _run(self) -> tuple[Action, str]:
        store = self.stores[self.target.role]
        dry_run = self.options.dry_run
        remote = store.stat(self.target.key)
        if remote is not None:
            return self._existing(remote)
        if self.target.role == "production":
            # Production gets the bytes staging tested: check staging right before writing.
            staging_store = self.stores["staging"]
            staged = staging_store.stat(self.staging_target.key)
            if staged is not None and staged.sha256 != self.local.sha256:
                raise PublishError(self._staging_differs(staged))
            if staged is not None:
                self._require_content(staging_store, staged, self.staging_target.uri)
            if staged is None and not dry_run:
                raise PublishError(
                    f"refusing to publish {self.local.name} to production: staging "
                    f"{self.staging_target.uri} does not hold it (it must be published to "
                    "staging first)"
                )
            if store.can_copy_from(staging_store):
                if dry_run:
                    return "dry-run", f"would copy server-side from {self.staging_target.uri}"
                assert staged is not None
                try:
                    store.copy_from(staging_store, staged, self.target.key, self.local)
                except ObjectExists as e:
                    return self._lost_race(e)
                return "copied", f"server-side copy of {self.staging_target.uri}"
        if dry_run:
            return "dry-run", f"would upload {describe_size(self.local.size)}" + self._parts()
        progress = None
        if self.on_progress is not None:
            hook, target, local = self.on_progress, self.target, self.local

            def progress(done: int) -> None:
                hook(target, local, done)

        try:
            store.write(self.local, self.target.key, progress)
        except ObjectExists as e:
            return self._lost_race(e)
        return "uploaded", describe_size(self.local.size) + self._parts()

    def _parts(self) -> str:
        store = self.stores[self.target.role]
        part_size = self.options.s3.part_size
        if store.destination.kind != "s3" or self.local.size < part_size:
            return ""
        parts = -(-self.local.size // part_size)
        return f" in {parts} parts of {part_size // MiB} MiB"

    def _existing(self, remote: RemoteObject) -> tuple[Action, str]:
        if remote.sha256 is None:
            raise PublishError(
                f"{self.target.uri} already exists without a recorded sha256 (not published by "
                "mmetools?); refusing to guess whether it holds the same bytes"
            )
        if remote.sha256 == self.local.sha256:
            store = self.stores[self.target.role]
            self._require_content(store, remote, self.target.uri)
            if not self.options.dry_run and store.repair_sidecars(self.local, self.target.key):
                return "unchanged", "already published; rewrote its missing or stale sidecars"
            return "unchanged", "already published with the same sha256"
        if self.target.role == "staging" and self.production_branch:
            raise PublishError(self._staging_differs(remote))
        raise PublishError(self._immutable(remote))

    def _require_content(self, store: Store, remote: RemoteObject, uri: str) -> None:
        """The object whose metadata names the build's sha256 holds the build's bytes (by
        content: S3's checksum and size, or a read); else nothing is written anywhere."""
        problem = store.content_problem(remote, self.local)
        if problem is None:
            return
        raise PublishError(
            f"refusing to publish {self.local.name}: {uri} is labelled with the local build's "
            f"sha256 {self.local.sha256} but holds other bytes ({problem}); it was not written "
            "by a publish of this build: delete it and publish again"
        )

    def _lost_race(self, error: ObjectExists) -> tuple[Action, str]:
        """A create-only write found the key taken (a concurrent publisher, or our own retry)."""
        existing = error.existing
        if existing is not None and existing.sha256 == self.local.sha256:
            self._require_content(self.stores[self.target.role], existing, self.target.uri)
            # Our own retried request (its first answer was lost) or a concurrent publisher of
            # the same build: either way the key holds exactly these bytes.
            return "uploaded", "the key got the same sha256 from a concurrent or retried write"
        if existing is None or existing.sha256 is None:
            raise PublishError(
                f"{self.target.uri} appeared while publishing and its sha256 cannot be read; "
                "rerun to check it"
            )
        raise PublishError(self._immutable(existing) + " (written concurrently by another publish)")

    def _immutable(self, remote: RemoteObject) -> str:
        return (
            f"{self.target.uri} already holds different bytes (sha256 {remote.sha256}, local "
            f"build {self.local.sha256}); models are immutable: bump "
            f"models/{self.local.model}/model_version.txt"
            + self._why_different(self.target.role, self.target.key)
        )

    def _why_different(self, role: Role, key: str) -> str:
        """Which members differ, from the published manifest, and what that means."""
        raw = self.stores[role].read_manifest(key)
        if raw is None:
            return " (the published manifest cannot be read to compare members)"
        try:
            published = Manifest.from_json(parse_json(raw), StoredFiles(key).manifest)
        except (ValueError, MmetoolsError) as e:
            return f" (the published manifest cannot be compared: {e})"
        return "\n" + explain_difference(published, self.manifest)

    def _staging_differs(self, staged: RemoteObject) -> str:
        return (
            f"refusing to publish {self.local.name} to production: staging "
            f"{self.staging_target.uri} holds different bytes (sha256 {staged.sha256}) than the "
            f"local build (sha256 {self.local.sha256}); production only gets the bytes staging "
            "tested: publish the exact artifact staging holds, or bump "
            f"models/{self.local.model}/model_version.txt"
            + self._why_different("staging", self.staging_target.key)
        )


def explain_difference(published: Manifest, local: Manifest) -> str:
    """Why two builds of one name differ: the members that differ, and whether that is the
    model's own files (a change that needs a version bump) or only what the build adds (the
    packed env, the compression): a build that was not reproducible."""
    differences = member_differences(published, local)
    if not differences:
        return (
            "every member is identical; only the compressed bytes differ (published with "
            f"{published.compression or 'unknown compression'}, local build "
            f"{local.compression or 'unknown'}): the build was not reproducible"
        )
    own = [
        line
        for line in differences
        if not line.endswith(f"/{ENV_ARCHIVE}") and not line.endswith(MODEL_ENV_SUFFIX)
    ]
    shown = "; ".join(differences[:20]) + (
        f"; and {len(differences) - 20} more" if len(differences) > 20 else ""
    )
    if own:
        verdict = "the model's files changed since it was published"
    else:
        verdict = (
            "the model's own files are identical, only the packed env differs: the build was "
            f"not reproducible (env {published.env_hash or '-'} published, "
            f"{local.env_hash or '-'} local)"
        )
    return f"members that differ: {shown}; {verdict}"


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


def _is_transient(error: Exception) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ClientError):
        return _error_code(error) in _TRANSIENT_CODES
    return isinstance(error, (ConnectionError, HTTPClientError))


__all__ = ["ProgressHook", "PublishStep", "Stores", "explain_difference"]
