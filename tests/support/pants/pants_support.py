"""What the tests of pants/test_pants.py share across tiers
(or with other test files): moved here when test_pants_integration.py was split into tiers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO_ROOT


def _pants(*args: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cwd / "pants"), *args],
        cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PANTS_")}, **env},
        capture_output=True,
        text=True,
        timeout=880,
    )
