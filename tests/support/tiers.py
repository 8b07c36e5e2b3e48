"""The test tiers are folders: tests/unit (no server, no moto), tests/functional (AWS through
moto_server, Stubber, the faulty S3 proxy; a test that starts moto_server is marked `integration`,
so `-m "not integration"` stays the no-server loop) and tests/integration (Triton, dvc, pants; all
marked `integration`). A test marked `integration` in the unit folder is a misplaced test:
collection fails and names it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

TIERS_WITHOUT_SERVERS = ("unit",)


def misplaced_integration_tests(items: Iterable[pytest.Item], tests_dir: Path) -> list[str]:
    """Node ids of the tests marked `integration` under tests/unit."""
    misplaced = []
    for item in items:
        if item.get_closest_marker("integration") is None:
            continue
        if any(item.path.is_relative_to(tests_dir / tier) for tier in TIERS_WITHOUT_SERVERS):
            misplaced.append(item.nodeid)
    return misplaced
