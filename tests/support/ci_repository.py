"""What the ci/pipeline.py tests share: the script loaded as a module (once per session) and a
scratch git repository's few operations."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from conftest import REPO_ROOT


def load_pipeline() -> ModuleType:
    """ci/pipeline.py as the module ``ci_pipeline`` (the same object for every test file)."""
    if "ci_pipeline" in sys.modules:
        return sys.modules["ci_pipeline"]
    spec = importlib.util.spec_from_file_location("ci_pipeline", REPO_ROOT / "ci" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_pipeline"] = module
    spec.loader.exec_module(module)
    return module


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def write(repo: Path, files: Mapping[str, str]) -> None:
    for relpath, text in files.items():
        path = repo / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
