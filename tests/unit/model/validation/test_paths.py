"""mmetools.model.validation.paths: what a PATH may be, and folders of model folders."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mmetools.cli import main
from mmetools.core.errors import UsageError
from mmetools.model.validation import validate_path, validate_paths
from support.model.validation_support import BASE, lines, write_model_folder, write_repository


def test_folder_of_model_folders(tmp_path: Path) -> None:
    write_model_folder(tmp_path)
    other = write_model_folder(tmp_path / "second")
    (other / "model_version.txt").write_text("x", encoding="utf-8")
    shutil.move(other, tmp_path / "models" / "bar")
    assert lines(validate_path(tmp_path / "models")) == [
        "models/bar/foo_pipeline/config.pbtxt: warning: ensemble folder 'foo_pipeline' should "
        "be named 'bar_pipeline'",
        "models/bar/model_version.txt: version must be a positive integer such as 1 or 12, "
        "got 'x'",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nope", "nope: no such file or folder"),
        (
            lambda root: _touch(root / "file.txt"),
            "file.txt: not a folder; expected a model folder (with model_version.txt) or a "
            "Triton model repository",
        ),
        (
            lambda root: _mkdir(root / "empty"),
            "empty: neither a model folder (no model_version.txt) nor a Triton model repository "
            "(no subfolder with a config.pbtxt)",
        ),
        (
            lambda root: write_repository(root / "repo", BASE) / "foo_inferencer",
            "repo/foo_inferencer: this is a single Triton model; pass the repository that "
            "holds it (repo) or its model folder",
        ),
    ],
    ids=["missing", "file", "empty", "single-model"],
)
def test_unusable_paths(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = Path(make(tmp_path).relative_to(tmp_path))
    with pytest.raises(UsageError) as raised:
        validate_paths([path])
    assert str(raised.value) == message


def _touch(path: Path) -> Path:
    path.write_text("", encoding="utf-8")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_files_among_folders_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model_folder(tmp_path)
    (tmp_path / "models" / "BUILD").write_text("", encoding="utf-8")
    assert validate_paths([Path("models/foo"), Path("models/BUILD")]) == []
    assert main(["validate", "models/BUILD", "models/foo"]) == 0
    assert capsys.readouterr().out == (
        "valid: 0 errors, 0 warnings in 1 path (skipped 1 file: models/BUILD)\n"
    )
