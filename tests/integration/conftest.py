"""The integration tier: every test collected in this folder is marked `integration` (so
`-m "not integration"` leaves the whole folder out, as it does for marked tests elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

TIER = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: marked before `-m` deselects (pytest's own hook of the same name).
    for item in items:
        if item.path.is_relative_to(TIER):
            item.add_marker(pytest.mark.integration)
