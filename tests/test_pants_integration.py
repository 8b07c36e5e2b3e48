"""Runs ./pants for real: the launcher sets Pants 2.17.1 up (once per machine), loads the in-repo
plugin, and finds one triton_model target per model folder."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import MODELS_DIR, REPO_ROOT


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pants_lists_a_triton_model_per_model_folder() -> None:
    expected = sorted(
        f"models/{p.name}:{p.name}"
        for p in MODELS_DIR.iterdir()
        if (p / "model_version.txt").is_file()
    )
    assert expected, "no model folders"
    # No daemon left behind by the test suite; no file watching (the suite writes files).
    completed = subprocess.run(
        [
            str(REPO_ROOT / "pants"),
            "--no-pantsd",
            "--no-watch-filesystem",
            "--filter-target-type=triton_model",
            "list",
            "::",
        ],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("PANTS_")},
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == expected
