"""What the tests of model/test_dvc.py share across tiers
(or with other test files): moved here when test_dvc.py was split into tiers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conftest import EXAMPLE_MODELS, MODELS_DIR, REPO_ROOT
from mmetools.core import process
from mmetools.model.folder import ModelFolder

ONNX = "models/screen_detector/screen_detector_inferencer/1/model.onnx"
TORCHSCRIPT = "models/intent_classifier/intent_classifier_inferencer/1/model.pt"


def copy_repository(destination: Path) -> Path:
    """The repository as a fresh clone has it: DVC config + local remote + models, no weights."""
    destination.mkdir()
    shutil.copytree(
        REPO_ROOT / ".dvc",
        destination / ".dvc",
        ignore=shutil.ignore_patterns("cache", "tmp", "config.local"),
    )
    shutil.copy2(REPO_ROOT / ".dvcignore", destination / ".dvcignore")
    for name in EXAMPLE_MODELS:
        shutil.copytree(
            MODELS_DIR / name,
            destination / "models" / name,
            ignore=shutil.ignore_patterns("model.onnx", "model.pt", "__pycache__"),
        )
    # DVC wants a git repository around it (core.no_scm is not set in .dvc/config)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "repo")


@pytest.fixture
def no_subprocess() -> Iterator[list[Sequence[str]]]:
    """Fail any command but git run through mmetools.core.process: proves a code path never calls
    dvc. (git may run: fetch asks it whether committed pointers have committed objects.)"""
    calls: list[Sequence[str]] = []

    def refuse(
        argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
    ) -> process.CompletedCommand:
        if argv[0] == "git":
            return previous(argv, cwd, env)
        calls.append(argv)
        raise AssertionError(f"unexpected command: {' '.join(argv)}")

    previous = process.set_runner(refuse)
    try:
        yield calls
    finally:
        process.set_runner(previous)


def model(repo: Path, name: str) -> ModelFolder:
    return ModelFolder(repo / "models" / name)
