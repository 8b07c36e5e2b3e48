"""`mmetools lock`: hash-pinned resolutions per model for the target's Python, checked current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.model.folder import ModelFolder
from mmetools.core.settings import load_settings


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "intent_classifier"
    shutil.copytree(MODELS_DIR / "intent_classifier", folder)
    return folder


def test_committed_locks_are_current_for_the_default_target() -> None:
    """What CI's `mmetools lock --check` guards, for the examples (read only, no resolver)."""
    from mmetools.build.env import locked_digest, lock_path, requirements_digest

    target = load_settings().target
    for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "requirements.txt").is_file()):
        model = ModelFolder(folder)
        text = lock_path(model, target).read_text(encoding="utf-8")
        assert locked_digest(text) == requirements_digest(model), folder
        assert "--hash=sha256:" in text


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
