"""mmetools.testing.serving_env: the cached venv the Python steps of an unpacked model run in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mmetools.testing.serving_env import ensure_serving_env


@pytest.mark.integration
def test_real_env_has_the_requirements_and_not_mmetools_packages(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==1.26.4\n")
    env = ensure_serving_env(requirements, tmp_path / "cache")
    probe = "import numpy, importlib.util as u; print(numpy.__version__, u.find_spec('torch'))"
    completed = subprocess.run(
        [str(env.python), "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["1.26.4", "None"]
