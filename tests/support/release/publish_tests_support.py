"""What the tests of release/test_publish.py share across tiers
(or with other test files): moved here when test_publish.py was split into tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from support.release.publish_support import MiB

from mmetools.release.publish import PublishOptions, PublishReport, publish
from mmetools.core.settings import Settings
from mmetools.release.storage import S3Tuning

SMALL_PARTS = S3Tuning(part_size=5 * MiB, max_concurrency=4)


def run(
    artifacts: list[Path],
    branch: str,
    settings: Settings,
    session: boto3.session.Session | None = None,
    **options: Any,
) -> PublishReport:
    tuning = options.pop("s3", SMALL_PARTS)
    return publish(
        artifacts,
        branch,
        settings=settings,
        options=PublishOptions(s3=tuning, **options),
        session=session,
    )


def actions(report: PublishReport) -> list[tuple[str, str]]:
    return [(r.role, r.action) for r in report.results]
