"""The tiers are folders: a test marked `integration` under tests/unit fails collection
(tests/conftest.py), and every test under tests/integration is marked `integration`
(tests/integration/conftest.py). Checked on a copy of those conftests, one test in each place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

TESTS = REPO_ROOT / "tests"
PYTEST_INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider -p no:locust
markers =
    integration: starts real servers
"""
MARKED = "import pytest\n\n\n@pytest.mark.integration\ndef test_marked() -> None:\n    pass\n"
UNMARKED = "def test_unmarked() -> None:\n    pass\n"


def _suite(root: Path, files: dict[str, str]) -> Path:
    """A copy of the suite's conftests and tier check in root/tests, plus `files`."""
    tests = root / "tests"
    shutil.copytree(
        TESTS / "support", tests / "support", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    for tier in ("unit", "functional", "integration"):
        (tests / tier).mkdir()
        (tests / tier / "__init__.py").write_text("")
    shutil.copy(TESTS / "integration" / "conftest.py", tests / "integration" / "conftest.py")
    for name, text in files.items():
        (tests / name).write_text(text)
    (root / "pytest.ini").write_text(PYTEST_INI)
    return tests


def _collect(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *options, "tests"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_integration_test_under_unit_fails_collection_and_is_named(tmp_path: Path) -> None:
    _suite(tmp_path, {"unit/test_misplaced.py": MARKED, "functional/test_fine.py": UNMARKED})
    collected = _collect(tmp_path, "-m", "not integration")
    assert collected.returncode != 0
    assert "tests/unit/test_misplaced.py::test_marked" in collected.stdout + collected.stderr


def test_every_test_under_integration_is_marked_integration(tmp_path: Path) -> None:
    _suite(tmp_path, {"integration/test_server.py": UNMARKED, "unit/test_fine.py": UNMARKED})
    assert _collect(tmp_path, "-m", "not integration").stdout.splitlines()[0] == (
        "tests/unit/test_fine.py::test_unmarked"
    )
    assert _collect(tmp_path, "-m", "integration").stdout.splitlines()[0] == (
        "tests/integration/test_server.py::test_unmarked"
    )
