"""mmetools.testing.serving_env: the cached venv the Python steps of an unpacked model run in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from mmetools.core import process
from mmetools.core.errors import EnvPackError
from mmetools.core.process import CompletedCommand
from mmetools.testing.serving_env import COMPLETE_MARKER, ensure_serving_env, env_key


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Commands run through mmetools.core.process, recorded instead of run; uv is on PATH."""
    commands: list[list[str]] = []

    def runner(
        argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
    ) -> CompletedCommand:
        commands.append(list(argv))
        if argv[1:2] == ["venv"]:
            Path(argv[-1]).mkdir(parents=True)
        return CompletedCommand(tuple(argv), 0, "")

    monkeypatch.setattr("mmetools.testing.serving_env._uv", lambda: ["uv"])
    previous = process.set_runner(runner)
    try:
        yield commands
    finally:
        process.set_runner(previous)


def test_env_is_built_once_then_reused(tmp_path: Path, recorded: list[list[str]]) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==13.0.0\n")
    env = ensure_serving_env(requirements, tmp_path / "cache")
    assert env.path == tmp_path / "cache" / "serving-envs" / env.key
    assert (env.path / COMPLETE_MARKER).read_text() == "pillow==13.0.0\n"
    python = str(env.path / "bin" / "python")
    assert recorded == [
        ["uv", "venv", "--quiet", "--python", recorded[0][4], str(env.path)],
        ["uv", "pip", "install", "--quiet", "--python", python, "-r", "requirements.txt", "numpy"],
    ]
    assert ensure_serving_env(requirements, tmp_path / "cache") == env
    assert len(recorded) == 2  # cached: nothing run


def test_numpy_is_not_added_when_the_requirements_name_it(
    tmp_path: Path, recorded: list[list[str]]
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("NumPy>=1.26\n")
    ensure_serving_env(requirements, tmp_path / "cache")
    assert recorded[1][-2:] == ["-r", "requirements.txt"]


def test_a_model_without_requirements_gets_numpy_only(
    tmp_path: Path, recorded: list[list[str]]
) -> None:
    ensure_serving_env(tmp_path / "requirements.txt", tmp_path / "cache")
    assert recorded[1][-1] == "numpy" and "-r" not in recorded[1]


def test_key_follows_the_requirements_and_the_interpreter() -> None:
    assert env_key("numpy==1.26.4\n") == env_key("numpy==1.26.4")
    assert env_key("numpy==1.26.4") != env_key("numpy==1.26.3")
    assert env_key("numpy", Path("/usr/bin/python3.11")) != env_key("numpy", Path("/opt/py"))


def test_failed_build_names_the_requirements_and_leaves_no_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-mmetools==0\n")

    def runner(
        argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
    ) -> CompletedCommand:
        if argv[1:2] == ["venv"]:
            Path(argv[-1]).mkdir(parents=True)
            return CompletedCommand(tuple(argv), 0, "")
        return CompletedCommand(tuple(argv), 1, "No solution found: no-such-package-mmetools")

    monkeypatch.setattr("mmetools.testing.serving_env._uv", lambda: ["uv"])
    previous = process.set_runner(runner)
    try:
        with pytest.raises(EnvPackError) as error:
            ensure_serving_env(requirements, tmp_path / "cache")
    finally:
        process.set_runner(previous)
    assert str(error.value).startswith(
        f"{requirements}: could not build the serving environment:\n"
    )
    assert "No solution found: no-such-package-mmetools" in str(error.value)
    assert [p.name for p in (tmp_path / "cache" / "serving-envs").iterdir()] == [
        f"{env_key(requirements.read_text())}.lock"
    ]
