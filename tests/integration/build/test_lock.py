"""`mmetools lock`: hash-pinned resolutions per model for the target's Python, checked current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "intent_classifier"
    shutil.copytree(MODELS_DIR / "intent_classifier", folder)
    return folder


@pytest.mark.integration
def test_lock_writes_checks_and_catches_a_stale_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _model(tmp_path)
    monkeypatch.chdir(tmp_path)
    lock = folder / "requirements-3.12.lock"
    lock.unlink()
    assert main(["lock", "--check", "models/intent_classifier"]) == 1
    assert "requirements-3.12.lock: missing for Python 3.12 on x86_64-manylinux_2_39" in (
        capsys.readouterr().err
    )
    assert not lock.exists()  # --check writes nothing
    assert main(["lock", "models/intent_classifier"]) == 0
    text = lock.read_text()
    assert text.startswith("# Locked by `mmetools lock` for Python 3.12 on x86_64-manylinux_2_39.")
    assert "numpy==1.26.4 \\\n    --hash=sha256:" in text and str(tmp_path) not in text
    assert main(["lock", "--check", "models/intent_classifier"]) == 0
    (folder / "requirements.txt").write_text("numpy==1.26.3\n")
    assert main(["lock", "--check", "models/intent_classifier"]) == 1
    assert "stale for Python 3.12" in capsys.readouterr().err
    # and the env step refuses the stale lock rather than building something else
    assert main(["env", "models/intent_classifier"]) == 1
    assert "requirements-3.12.lock: stale: it was not made from the current requirements.txt" in (
        capsys.readouterr().err
    )
