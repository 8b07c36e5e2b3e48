"""Publish ``dist/<name>_<version>.tar.gz`` artifacts to staging and, from the production branch,
to production.

Rules (README "Publishing"):

- every branch publishes to staging, under ``<prefix>/<branch-slug>/`` when
  ``publish.namespace_staging_by_branch`` is set; only ``publish.production_branch`` also
  publishes to production, staging first;
- versions are immutable: the same name with the same sha256 is a no-op (one HEAD request),
  with different bytes it is refused and nothing is overwritten;
- production gets the bytes staging tested: before production is written, staging must hold the
  artifact with the local build's sha256; it is then copied server-side when both are S3;
- the local file must match its ``.sha256`` before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmetools.build.audit import require_audit_of
from mmetools.core.atomic import write_text_atomically
from mmetools.core.jsontext import parse_json
from mmetools.core.errors import ArtifactError, MmetoolsError, PublishError, UsageError
from mmetools.release.evidence import require_passing
from mmetools.build.manifest import (
    MANIFEST_SUFFIX,
    SHA256_SUFFIX,
    Manifest,
    member_differences,
    read_manifest,
    write_manifest,
)
from mmetools.release.provenance import provenance
from mmetools.model.folder import ENV_ARCHIVE, parse_artifact_name
from mmetools.core.settings import Settings, load_settings
from mmetools.release.storage import (
    MiB,
    Deadline,
    Destination,
    LocalArtifact,
    ObjectExists,
    PartChecksums,
    RemoteObject,
    S3Connection,
    S3Tuning,
    Store,
    describe_size,
    open_store,
    parse_destination,
    parse_sha256_text,
    redact_credentials,
)

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

CHECKSUM_BLOCK = 1 << 20  # bytes per read when verifying an artifact

_SLUG_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_SLUG_MAX = 100

Role = Literal["staging", "production"]
Action = Literal["uploaded", "unchanged", "copied", "dry-run"]

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


@dataclass(frozen=True)
class PublishTarget:
    """One artifact's place in one destination."""

    role: Role
    destination: Destination
    key: str

    @property
    def uri(self) -> str:
        return self.destination.object_uri(self.key)


@dataclass(frozen=True)
class PublishResult:
    artifact: str  # file name, e.g. screen_detector_3.tar.gz
    destination: str  # URI of the published object
    role: Role
    action: Action
    sha256: str
    size: int
    seconds: float
    requests: int  # HTTP requests sent, retries included (0 for folders)
    detail: str = ""


@dataclass(frozen=True)
class PublishFailure:
    artifact: str
    destination: str
    role: Role
    message: str


@dataclass(frozen=True)
class PublishReport:
    results: tuple[PublishResult, ...]
    failures: tuple[PublishFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class PublishOptions:
    dry_run: bool = False
    s3: S3Tuning = field(default_factory=S3Tuning)
    # Whole-step attempts around botocore's per-request retries, with capped exponential backoff.
    attempts: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 20.0


# --------------------------------------------------------------------------------------------
# Names, branches, destinations


def branch_slug(branch: str) -> str:
    """``feature/Fix_42`` -> ``feature~_46ix_5f42``: a folder name that no other branch gets.

    Lowercase letters, digits, ``-`` and ``.`` (not leading) are kept, ``/`` becomes ``~`` (git
    forbids ``~`` in branch names), every other byte of the UTF-8 name becomes ``_xx`` (hex).
    The code is reversible, so two branches never share a staging folder (``Main`` and ``main``
    used to, and the first one blocked the other).
    """
    name = branch.strip().removeprefix("refs/heads/")
    if not name:
        raise UsageError(f"--branch {branch!r}: not a usable branch name (it is empty)")
    parts: list[str] = []
    for index, char in enumerate(name):
        if char in _SLUG_KEPT and not (char == "." and index == 0):
            parts.append(char)
        elif char == "/":
            parts.append("~")
        else:
            parts.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    slug = "".join(parts)
    if len(slug) > _SLUG_MAX:
        raise UsageError(
            f"--branch {branch!r}: too long for a destination folder "
            f"({len(slug)} characters encoded, max {_SLUG_MAX})"
        )
    return slug


def branch_from_slug(slug: str) -> str:
    """The inverse of :func:`branch_slug` (for listings, and to prove the code is reversible)."""
    out = bytearray()
    index = 0
    while index < len(slug):
        char = slug[index]
        if char == "_":
            out.append(int(slug[index + 1 : index + 3], 16))
            index += 3
            continue
        out.extend(b"/" if char == "~" else char.encode("ascii"))
        index += 1
    return out.decode("utf-8", "surrogatepass")


def destinations(settings: Settings) -> tuple[Destination, Destination]:
    """(staging, production) from settings (mmetools.toml and MMETOOLS_*_URI)."""
    publish = settings.publish
    staging = parse_destination(
        publish.staging_uri, settings.root, "publish.staging_uri (or MMETOOLS_STAGING_URI)"
    )
    production = parse_destination(
        publish.production_uri,
        settings.root,
        "publish.production_uri (or MMETOOLS_PRODUCTION_URI)",
    )
    return staging, production


def is_production_branch(branch: str, settings: Settings) -> bool:
    name = branch.strip().removeprefix("refs/heads/")
    return name == settings.publish.production_branch


def plan_targets(artifact_name: str, branch: str, settings: Settings) -> tuple[PublishTarget, ...]:
    """Where ``artifact_name`` goes from ``branch``: staging, then production on the prod branch."""
    staging, production = destinations(settings)
    slug = branch_slug(branch)
    namespace = slug if settings.publish.namespace_staging_by_branch else ""
    targets = [PublishTarget("staging", staging, staging.key(namespace, artifact_name))]
    if is_production_branch(branch, settings):
        targets.append(PublishTarget("production", production, production.key(artifact_name)))
    return tuple(targets)


# --------------------------------------------------------------------------------------------
# Local artifacts


def load_local_artifact(
    path: Path, cache_dir: Path | None = None, part_size: int = S3Tuning.part_size
) -> LocalArtifact:
    """Check an artifact and its siblings; its sha256 must equal its ``.sha256`` file.

    The same pass computes the CRC32 of each ``part_size`` piece: an upload in parts of that
    size must read exactly these (storage.SentBytes). Hashing a large tarball takes seconds, so a
    verified (path, size, mtime, inode) is remembered under ``cache_dir`` with both, and a
    re-publish of an untouched file does not read it again.
    """
    model, version = astuple(parse_artifact_name(path))
    try:
        stat = path.stat()
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no such file (build it with `mmetools package`)") from e
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    sha_path = path.with_name(path.name + SHA256_SUFFIX)
    manifest_path = path.with_name(f"{model}_{version}{MANIFEST_SUFFIX}")
    try:
        with sha_path.open("rb") as stream:
            sha_text = stream.read(4096).decode("utf-8", errors="replace")
    except FileNotFoundError as e:
        raise ArtifactError(
            f"{path}: {sha_path.name} is missing; `mmetools package` writes it next to the artifact"
        ) from e
    except OSError as e:
        raise ArtifactError(f"{sha_path}: cannot read it: {e.strerror or e}") from e
    expected = parse_sha256_text(sha_text)
    named = sha_text.split()[1:2]
    if expected is None:
        raise ArtifactError(f"{sha_path}: expected '<64 hex digits>  {path.name}'")
    if named and named[0].lstrip("*") != path.name:
        raise ArtifactError(f"{sha_path}: holds the sha256 of {named[0]!r}, not of {path.name}")
    _check_manifest(manifest_path, model, version, expected)

    remembered = _cached_checksums(path, stat, cache_dir, expected, part_size)
    if remembered is None:
        actual, part_crc32s = read_checksums(path, part_size)
        if actual == expected:
            _remember_checksums(path, stat, cache_dir, actual, part_size, part_crc32s)
    else:
        actual, part_crc32s = expected, remembered
    if actual != expected:
        raise ArtifactError(
            f"{path}: sha256 is {actual} but {sha_path.name} says {expected}; the file changed "
            "after packaging: rebuild it with `mmetools package`"
        )
    return LocalArtifact(
        path=path, model=model, version=version, sha256=actual, size=stat.st_size,
        manifest_path=manifest_path, part_size=part_size, part_crc32s=part_crc32s,
    )  # fmt: skip


def remember_verified(
    path: Path, sha256: str, cache_dir: Path, part_size: int = S3Tuning.part_size
) -> None:
    """For the writer of ``path``, who hashed its bytes as it wrote them: remember them as
    verified, so that publishing the file from this machine does not hash it again. Reads the
    file once for its part CRC32s (cheap next to a SHA-256)."""
    try:
        stat = path.stat()
        parts = PartChecksums(part_size)
        for block in _blocks(path):
            parts.update(block)
    except OSError as e:  # a cache is an optimisation: never fail the writer over it
        logger.debug("could not remember %s as verified: %s", path, e)
        return
    _remember_checksums(path, stat, cache_dir, sha256, part_size, tuple(parts.crc32s))


def read_checksums(path: Path, part_size: int) -> tuple[str, tuple[int, ...]]:
    """(sha256, CRC32 of each part) of the file at ``path``, in one read."""
    digest, parts = hashlib.sha256(), PartChecksums(part_size)
    for block in _blocks(path):
        digest.update(block)
        parts.update(block)
    return digest.hexdigest(), tuple(parts.crc32s)


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in CHECKSUM_BLOCK pieces, read once."""
    with path.open("rb", buffering=0) as f:
        while block := f.read(CHECKSUM_BLOCK):
            yield block


def _check_manifest(path: Path, model: str, version: int, sha256: str) -> Manifest:
    """The artifact's manifest, validated, and consistent with its name and its .sha256."""
    manifest = read_manifest(path)
    if manifest.model != model or manifest.version != version:
        raise ArtifactError(
            f"{path}: manifest is for {manifest.artifact}, not {model}_{version}.tar.gz"
        )
    if manifest.sha256 != sha256:
        raise ArtifactError(
            f"{path}: manifest describes a build with sha256 {manifest.sha256}, but the "
            f".sha256 file says {sha256}: the two come from different builds; rebuild with "
            "`mmetools build`"
        )
    return manifest


def _cache_file(path: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_dir / "publish-verified" / f"{digest}.json"


def _fingerprint(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def _cached_checksums(
    path: Path, stat: os.stat_result, cache_dir: Path | None, expected: str, part_size: int
) -> tuple[int, ...] | None:
    """The part CRC32s remembered for this file's stat, if its sha256 was verified as
    ``expected`` with parts of ``part_size``."""
    if cache_dir is None:
        return None
    try:
        data = json.loads(_cache_file(path, cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("stat") != _fingerprint(stat):
        return None
    crc32s = data.get("part_crc32s")
    if data.get("sha256") != expected or data.get("part_size") != part_size:
        return None
    if not isinstance(crc32s, list) or not all(isinstance(c, int) for c in crc32s):
        return None
    return tuple(crc32s) if len(crc32s) == max(1, -(-stat.st_size // part_size)) else None


def _remember_checksums(
    path: Path,
    stat: os.stat_result,
    cache_dir: Path | None,
    sha: str,
    part_size: int,
    part_crc32s: tuple[int, ...],
) -> None:
    if cache_dir is None:
        return
    target = _cache_file(path, cache_dir)
    record = {"stat": _fingerprint(stat), "sha256": sha, "part_size": part_size,
              "part_crc32s": list(part_crc32s)}  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(target, json.dumps(record))
    except OSError as e:  # a cache is an optimisation: never fail a publish over it
        logger.debug("could not record the verified sha256 of %s: %s", path, e)


# --------------------------------------------------------------------------------------------
# Publishing


ProgressHook = Callable[[PublishTarget, LocalArtifact, int], None]


def publish(
    artifacts: Sequence[Path],
    branch: str,
    *,
    settings: Settings | None = None,
    options: PublishOptions | None = None,
    session: boto3.session.Session | None = None,
    on_result: Callable[[PublishResult], None] | None = None,
    on_progress: ProgressHook | None = None,
    environ: Mapping[str, str] | None = None,
) -> PublishReport:
    """Publish each artifact to its targets. Checks every artifact before sending anything:
    its .sha256 and manifest, and its evidence (a passing MME artifact test of these bytes).
    The manifest sidecar sent is the build's plus provenance (git, CI run) and the evidence.

    Returns every result and every failure (one failing artifact does not stop the others);
    raises for problems that stop everything (bad names, sha256 mismatches, bad settings).
    """
    settings = settings if settings is not None else load_settings()
    options = options if options is not None else PublishOptions()
    if not artifacts:
        raise UsageError("nothing to publish: give dist/<name>_<version>.tar.gz files")
    staging, production = destinations(settings)
    # Cheap checks (names, branch, settings) first, then the sha256 of every file.
    for path in artifacts:
        parse_artifact_name(path)
    targets_of = [plan_targets(path.name, branch, settings) for path in artifacts]
    names = [path.name for path in artifacts]
    if len(set(names)) != len(names):
        raise UsageError("the same artifact name is given twice: " + ", ".join(sorted(names)))
    part_size = options.s3.part_size
    verified = [load_local_artifact(path, settings.cache_dir, part_size) for path in artifacts]
    # The audit gate, before anything is written: an artifact the serving target cannot load
    # (env for another Python, interpreter outside the image, newer glibc, numpy 2 on an old stub).
    serving_target = settings.target
    for local in verified:
        require_audit_of(local.path, serving_target, "publish", sha256=local.sha256,
                         cache_dir=settings.cache_dir)  # fmt: skip
    # The evidence gate: every artifact, before anything is written anywhere.
    evidence = [require_passing(local.path, local.sha256) for local in verified]
    environ = os.environ if environ is None else environ
    with tempfile.TemporaryDirectory(prefix="mmetools-publish-") as scratch:
        plans = []
        for local, proof, targets in zip(verified, evidence, targets_of):
            built = read_manifest(local.manifest_path)
            model_dir = settings.root / built.model_folder
            record = provenance(
                model_dir if model_dir.is_dir() else settings.root, branch, environ, local.name
            )
            published = Path(scratch) / local.manifest_path.name
            write_manifest(published, built.published(record, proof.as_json()))
            plans.append((replace(local, manifest_path=published), built, targets))
        return _publish_plans(
            plans, branch, settings, options, session, on_result, on_progress, staging, production
        )


def _publish_plans(
    plans: list[tuple[LocalArtifact, Manifest, tuple[PublishTarget, ...]]],
    branch: str,
    settings: Settings,
    options: PublishOptions,
    session: boto3.session.Session | None,
    on_result: Callable[[PublishResult], None] | None,
    on_progress: ProgressHook | None,
    staging: Destination,
    production: Destination,
) -> PublishReport:
    targets_of = [targets for _, _, targets in plans]

    connections: list[S3Connection] = []
    deadline = Deadline(time.monotonic() + settings.publish.deadline_s, settings.publish.deadline_s)

    def connection() -> S3Connection:
        # Created on first use: a run that only touches folders never imports boto3's models.
        if not connections:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                tuning = replace(
                    options.s3,
                    connect_timeout=settings.publish.connect_timeout_s,
                    read_timeout=settings.publish.read_timeout_s,
                )
                connections.append(
                    S3Connection(session or boto3.session.Session(), tuning, deadline)
                )
            except (BotoCoreError, ValueError) as e:
                # e.g. AWS_PROFILE names no profile; AWS_ENDPOINT_URL=not-a-url (ValueError)
                raise PublishError(f"cannot set up S3 access: {redact_credentials(str(e))}") from e
        return connections[0]

    def requests() -> int:
        return connections[0].requests if connections else 0

    stores = _Stores({"staging": staging, "production": production}, connection)
    production_branch = is_production_branch(branch, settings)
    for role in {target.role for targets in targets_of for target in targets}:
        stores.open(role)  # now: the boto3 client's setup is not any one artifact's time

    results: list[PublishResult] = []
    failures: list[PublishFailure] = []
    for local, manifest, targets in plans:
        staging_target = targets[0]
        for target in targets:
            step = _Step(
                local=local,
                manifest=manifest,
                target=target,
                stores=stores,
                requests=requests,
                staging_target=staging_target,
                production_branch=production_branch,
                options=options,
                on_progress=on_progress,
            )
            try:
                result = step.run_with_retries()
            except MmetoolsError as e:  # refusals, give-ups, a file changed while sent
                message = redact_credentials(str(e))
                failures.append(PublishFailure(local.name, target.uri, target.role, message))
                logger.debug("publish failed", exc_info=True)
                break  # never production after a failed staging step
            results.append(result)
            if on_result is not None:
                on_result(result)
    return PublishReport(tuple(results), tuple(failures))


class _Stores:
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
class _Step:
    """Publish one artifact to one target."""

    local: LocalArtifact
    manifest: Manifest  # the build's (without provenance): compared on a refusal
    target: PublishTarget
    stores: _Stores
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
            if not self.options.dry_run and store.repair_sidecars(self.local, self.target.key):
                return "unchanged", "already published; rewrote its missing or stale sidecars"
            return "unchanged", "already published with the same sha256"
        if self.target.role == "staging" and self.production_branch:
            raise PublishError(self._staging_differs(remote))
        raise PublishError(self._immutable(remote))

    def _lost_race(self, error: ObjectExists) -> tuple[Action, str]:
        """A create-only write found the key taken (a concurrent publisher, or our own retry)."""
        existing = error.existing
        if existing is not None and existing.sha256 == self.local.sha256:
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
            published = Manifest.from_json(parse_json(raw), f"{key}{MANIFEST_SUFFIX}")
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
    own = [line for line in differences if not line.endswith(f"/{ENV_ARCHIVE}")]
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


__all__ = [
    "PublishFailure",
    "PublishOptions",
    "PublishReport",
    "PublishResult",
    "PublishTarget",
    "branch_from_slug",
    "branch_slug",
    "destinations",
    "load_local_artifact",
    "remember_verified",
    "plan_targets",
    "publish",
]
