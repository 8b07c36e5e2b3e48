"""Where each artifact goes: the destinations from settings, one ``PublishTarget`` per place
(staging, then production on the production branch), the run's options and what it reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from mmetools.core.settings import Settings
from mmetools.release.publish.branches import branch_slug, is_production_branch
from mmetools.release.storage import Destination, S3Tuning, parse_destination

logger = logging.getLogger(__name__)

Role = Literal["staging", "production"]
Action = Literal["uploaded", "unchanged", "copied", "dry-run"]


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
    # Evidence that does not verify (not signed here, stale, another target): run the MME
    # artifact test on these exact bytes now instead of refusing (release/evidence.py).
    retest: bool = False
    s3: S3Tuning = field(default_factory=S3Tuning)
    # Whole-step attempts around botocore's per-request retries, with capped exponential backoff.
    attempts: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 20.0


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


def plan_targets(artifact_name: str, branch: str, settings: Settings) -> tuple[PublishTarget, ...]:
    """Where ``artifact_name`` goes from ``branch``: staging, then production on the prod branch."""
    staging, production = destinations(settings)
    slug = branch_slug(branch)
    namespace = slug if settings.publish.namespace_staging_by_branch else ""
    targets = [PublishTarget("staging", staging, staging.key(namespace, artifact_name))]
    if is_production_branch(branch, settings):
        targets.append(PublishTarget("production", production, production.key(artifact_name)))
    return tuple(targets)


__all__ = [
    "Action",
    "PublishFailure",
    "PublishOptions",
    "PublishReport",
    "PublishResult",
    "PublishTarget",
    "Role",
    "destinations",
    "plan_targets",
]
