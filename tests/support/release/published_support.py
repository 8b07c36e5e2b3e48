"""What the tests of release/test_published.py share across tiers
(or with other test files): moved here when test_published.py was split into tiers."""

from __future__ import annotations

from pathlib import Path

from support.release.publish_support import make_artifact, settings_for

from mmetools.release.publish import publish


def _publish(
    root: Path,
    settings_root: Path,
    staging: str,
    production: str,
    *names: str,
    branch: str = "main",
) -> None:
    settings = settings_for(settings_root, staging, production)
    artifacts = [make_artifact(root / "dist", name, seed=i) for i, name in enumerate(names)]
    report = publish(artifacts, branch, settings=settings)
    assert report.ok, report.failures
