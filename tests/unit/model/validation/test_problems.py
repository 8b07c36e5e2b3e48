"""mmetools.model.validation.problems: how a problem shows its place, and the summary line."""

from __future__ import annotations

from pathlib import Path

from mmetools.model.validation import Problem, display_path, summary_line, validate_repository
from support.model.validation_support import BASE, write_repository


def test_problem_text_and_relative_paths(tmp_path: Path) -> None:
    problem = Problem(tmp_path / "repo" / "a" / "config.pbtxt", "bad", "warning", 3, 7)
    assert str(problem) == "repo/a/config.pbtxt:3:7: warning: bad"
    assert not problem.is_error
    outside = Path("/somewhere/else/config.pbtxt")
    assert display_path(outside) == "/somewhere/else/config.pbtxt"
    assert display_path(Path("relative/x")) == "relative/x"


def test_summary_line() -> None:
    problems = [Problem(Path("a"), "x"), Problem(Path("a"), "y", "warning")]
    assert (
        summary_line(problems, [Path("a"), Path("b")]) == "invalid: 1 error, 1 warning in 2 paths"
    )
    assert summary_line([], [Path("a")]) == "valid: 0 errors, 0 warnings in 1 path"


def test_long_quoted_input_is_clipped(tmp_path: Path) -> None:
    # issue 11: a 10 MB garbage value made a 10 MB message
    configs = dict(BASE)
    configs["foo_inferencer"] = configs["foo_inferencer"].replace(
        'name: "foo_inferencer"', 'name: "' + "n" * 500_000 + '"'
    )
    root = write_repository(tmp_path / "repo", configs)
    (problem,) = [p for p in validate_repository(root) if p.message.startswith("name ")]
    assert len(problem.message) < 2100
    assert problem.message.endswith("more characters)")
