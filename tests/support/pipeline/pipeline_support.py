"""What the tests of pipeline/test_pipeline.py share across tiers
(or with other test files): moved here when test_pipeline.py was split into tiers."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import MODELS_DIR


def _copy_model(name: str, destination: Path) -> Path:
    """A copy of an example model without its DVC pointers (its weights as plain files)."""
    target = destination / "models" / name
    shutil.copytree(MODELS_DIR / name, target, ignore=shutil.ignore_patterns("*.dvc"))
    return target
