"""`mmetools validate`: one line per problem, a summary line, and the exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.cli import main
from support.model.validation_support import (
    BASE,
    FOLDER,
    PIPE_PATH,
    edited,
    write_model_folder,
    write_repository,
)


def test_cli_without_paths_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "Missing argument 'paths'" in capsys.readouterr().err


def test_cli_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_model_folder(tmp_path)
    assert main(["validate", "models/foo"]) == 0
    assert capsys.readouterr().out == "valid: 0 errors, 0 warnings in 1 path\n"


def test_cli_errors_exit_1_and_print_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model_folder(tmp_path)
    configs = edited(BASE, [("foo_inferencer", "TYPE_FP32", "TYPE_INT32")])
    write_repository(tmp_path / "repo", configs)
    assert main(["validate", "models/foo", "repo"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
        "foo_inferencer, which expects TYPE_INT32 but 'pre' is TYPE_FP32 (output 'PRE' of "
        "step 1 (foo_preprocessing))",
        "invalid: 1 error, 0 warnings in 2 paths",
    ]


def test_cli_warnings_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = edited(BASE, [("foo_postprocessing", 'backend: "python"', 'backend: "fancy"')])
    write_model_folder(tmp_path, configs)
    assert main(["validate", "models/foo"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{FOLDER}/foo_postprocessing/config.pbtxt: warning: unknown backend 'fancy'; the "
        "serving Triton must provide it",
        "valid: 0 errors, 1 warning in 1 path",
    ]


def test_cli_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "does/not/exist"]) == 2
    assert capsys.readouterr().err == "error: does/not/exist: no such file or folder\n"
