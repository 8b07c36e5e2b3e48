"""`mmetools lock`: hash-pinned resolutions per model for the target's Python, checked current."""

from __future__ import annotations

from conftest import MODELS_DIR
from mmetools.model.folder import ModelFolder
from mmetools.core.settings import load_settings


def test_committed_locks_are_current_for_the_default_target() -> None:
    """What CI's `mmetools lock --check` guards, for the examples (read only, no resolver)."""
    from mmetools.build.env import locked_digest, lock_path, requirements_digest

    target = load_settings().target
    for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "requirements.txt").is_file()):
        model = ModelFolder(folder)
        text = lock_path(model, target).read_text(encoding="utf-8")
        assert locked_digest(text) == requirements_digest(model), folder
        assert "--hash=sha256:" in text
