"""``publish()``: check every artifact (its sidecars, the audit, its evidence), then send each to
its targets, staging first; one failing artifact does not stop the others.

Rules (README "Publishing"):

- versions are immutable: the same name with the same sha256 is a no-op (one HEAD request),
  with different bytes it is refused and nothing is overwritten;
- production gets the bytes staging tested: before production is written, staging must hold the
  artifact with the local build's sha256; it is then copied server-side when both are S3;
- the local file must match its ``.sha256`` before anything is sent (build/verified.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mmetools.build.audit import require_audit_of
from mmetools.build.files import ArtifactFiles
from mmetools.build.manifest import Manifest, read_manifest, write_manifest
from mmetools.build.verified import LocalArtifact, load_local_artifact
from mmetools.core.errors import MmetoolsError, PublishError, UsageError
from mmetools.core.settings import Settings, load_settings
from mmetools.release.provenance import provenance
from mmetools.release.publish.gate import require_evidence, require_tested_here
from mmetools.release.publish.branches import is_production_branch
from mmetools.release.publish.plan import (
    PublishFailure,
    PublishOptions,
    PublishReport,
    PublishResult,
    PublishTarget,
    destinations,
    plan_targets,
)
from mmetools.release.publish.step import _HINTS, ProgressHook, PublishStep, Stores, _error_code
from mmetools.release.storage import (
    Deadline,
    Destination,
    S3Connection,
    redact_credentials,
)

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)


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
        ArtifactFiles.parse(path)
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
    environ = os.environ if environ is None else environ
    # The evidence gate: every artifact, before anything is written anywhere.
    evidence = require_evidence(verified, settings, retest=options.retest)
    with tempfile.TemporaryDirectory(prefix="mmetools-publish-") as scratch:
        plans = []
        for local, proof, targets in zip(verified, evidence, targets_of):
            built = read_manifest(local.manifest_path)
            model_dir = settings.root / built.model_folder
            folder = model_dir if model_dir.is_dir() else settings.root
            record = provenance(folder, branch, environ, local.name)
            record["tested"] = require_tested_here(local.path, proof, folder, record)
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

    stores = Stores({"staging": staging, "production": production}, connection)
    production_branch = is_production_branch(branch, settings)
    for role in {target.role for targets in targets_of for target in targets}:
        stores.open(role)  # now: the boto3 client's setup is not any one artifact's time

    results: list[PublishResult] = []
    failures: list[PublishFailure] = []
    for local, manifest, targets in plans:
        try:  # the version gate, on every branch, before this artifact is written anywhere
            _check_version(local, manifest, stores, production, connection)
        except MmetoolsError as e:
            message = redact_credentials(str(e))
            uri = production.object_uri(production.key(local.name))
            failures.append(PublishFailure(local.name, uri, "production", message))
            continue
        staging_target = targets[0]
        for target in targets:
            step = PublishStep(
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


def _check_version(
    local: LocalArtifact,
    manifest: Manifest,
    stores: Stores,
    production: Destination,
    connection: Callable[[], S3Connection],
) -> None:
    """The artifact's version must be above production's highest, or production must hold
    these very bytes under it (VersionError naming model_version.txt; release/versions.py)."""
    from botocore.exceptions import BotoCoreError, ClientError

    # Imported here: versions lists what is published through release/published.py, which
    # imports this package.
    from mmetools.release.versions import (
        candidate_of_artifact,
        check_against_production,
        production_versions,
    )

    candidate = candidate_of_artifact(
        local.model, local.version, local.sha256, manifest.model_folder
    )
    try:
        client = connection().client if production.kind == "s3" else None
        versions = production_versions(production, local.model, client)
        check_against_production(candidate, versions, stores.open("production"))
    except (BotoCoreError, ClientError) as e:
        code = _error_code(e)
        hint = _HINTS.get(code)
        raise PublishError(
            f"could not check {local.name} against production {production.uri}: {code}: "
            f"{redact_credentials(str(e))}" + (f"; {hint}" if hint else "")
        ) from e


__all__ = ["ProgressHook", "publish"]
