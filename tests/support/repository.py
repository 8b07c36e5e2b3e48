"""A temporary git repository made from the project: its tracked files as they are in this
checkout, with the bootstrap's .venv reused through a symlink (no second install)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import REPO_ROOT


def make_repository(destination: Path) -> Path:
    """The project's tracked files as they are in this checkout (commit them yourself)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if not source.is_file():
            continue  # deleted in this checkout, not committed yet
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv")
    return destination
