"""Output paths are checked before any work (siblings of issue 20 #16).

`mmetools package|build --out FILE` found out only after packing the env (and, for build, after
the tests on Triton); `mmetools diff --markdown|--junit-xml|--json` after both Triton loads.
The work is replaced by a tripwire: a case passes only if the command stops before it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import MODELS_DIR
from mmetools import cli


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import mmetools.pipeline
    import mmetools.release.diff

    def work(*_: Any, **__: Any) -> Any:
        raise WorkStarted("the command started working before its output paths were checked")

    for module, name in ((mmetools.pipeline, "package_model"), (mmetools.pipeline, "build"),
                         (mmetools.release.diff, "diff_against_published")):  # fmt: skip
        monkeypatch.setattr(module, name, work)
    shutil.copytree(MODELS_DIR / "intent_classifier", tmp_path / "models" / "intent_classifier",
                    ignore=shutil.ignore_patterns("python_env.tar.gz", "*.onnx"))  # fmt: skip
    (tmp_path / "a-file").write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


MODEL = "models/intent_classifier"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["package", MODEL, "--out", "a-file"], "--out a-file: is a file, not a folder"),
        (["build", MODEL, "--out", "a-file/runs"], "--out a-file/runs: a-file is a file, not a folder"),
        (["diff", MODEL, "--markdown", "a-file/d.md"], "--markdown a-file/d.md: a-file is a file"),
        (["diff", MODEL, "--json", "."], "--json .: is a folder"),
        (["diff", MODEL, "--junit-xml", "a-file/x.xml"], "--junit-xml a-file/x.xml: a-file is a file"),
    ],
)  # fmt: skip
def test_output_paths_are_checked_before_any_work(
    workspace: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
