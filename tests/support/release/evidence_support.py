"""Helpers shared by the diff and load-test tests: copies of the example models, published."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import MODELS_DIR

from mmetools.pipeline import package_model
from support.release.publish_support import write_passing_evidence
from mmetools.build.manifest import file_sha256
from mmetools.model.folder import ModelFolder
from mmetools.release.evidence import EvidenceTarget
from mmetools.core.settings import Settings

# The deliberate preprocessing change: screen_detector's normalisation mean.
ORIGINAL_MEAN = "MEAN = np.array([0.485, 0.456, 0.406]"
CHANGED_MEAN = "MEAN = np.array([0.685, 0.656, 0.606]"


def copy_model(name: str, root: Path, version: int = 1, change_mean: bool = False) -> ModelFolder:
    """A copy of models/<name> under ``root/models``, at ``version``, optionally with the
    screen_detector preprocessing constant changed."""
    copy = root / "models" / name
    shutil.copytree(
        MODELS_DIR / name,
        copy,
        ignore=shutil.ignore_patterns(".mypy_cache", "__pycache__", "python_env.tar.gz"),
    )
    (copy / "model_version.txt").write_text(f"{version}\n", encoding="utf-8")
    if change_mean:
        step = copy / f"{name}_preprocessing" / "1" / "model.py"
        text = step.read_text(encoding="utf-8")
        assert ORIGINAL_MEAN in text
        step.write_text(text.replace(ORIGINAL_MEAN, CHANGED_MEAN), encoding="utf-8")
    return ModelFolder(copy)


def build(model: ModelFolder, out: Path, settings: Settings) -> Path:
    """The artifact of ``model``, by mmetools' own packager (packed env included), with passing
    evidence so that it can be published: a stand-in for the artifact test these tests do not
    repeat (test_pipeline.py covers evidence written by real test runs, and the diff itself runs
    the artifact on Triton)."""
    path = package_model(model, out, settings, validate=False, fetch_weights=False).path
    write_passing_evidence(path, file_sha256(path), target=EvidenceTarget.of(settings.target))
    return path
