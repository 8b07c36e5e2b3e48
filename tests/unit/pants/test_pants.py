"""Runs ./pants for real: the launcher, the in-repo plugin, and a real remote cache (BuildGrid)
shared by two clones of this repository at different paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO_ROOT
from support.pants.pants_support import _pants


@pytest.mark.parametrize(
    ("goals", "goal"),
    [(["test"], "test"), (["lint", "check"], "lint"), (["--no-pantsd", "package"], "package")],
)
def test_a_goal_without_targets_says_what_to_pass(goals: list[str], goal: str) -> None:
    completed = _pants(*goals)
    assert completed.returncode == 2
    assert f"./pants {goal}: no targets given, so nothing would run" in completed.stderr
    assert f"./pants {goal} ::" in completed.stderr


# A stand-in for the Pants that ./pants set up (launch.env names it): the launcher's own logic,
# not Pants, is under test here.
FAKE_PANTS = '#!/bin/sh\necho "fake pants $*"\n'


def _launcher_repo(tmp_path: Path, bootstrap: str) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True)
    (repo / "pants").write_bytes((REPO_ROOT / "pants").read_bytes())
    (repo / "ci" / "bootstrap").write_text(f"#!/bin/sh\nset -e\n{bootstrap}\n")
    for script in (repo / "pants", repo / "ci" / "bootstrap"):
        script.chmod(0o755)
    cache = tmp_path / "pants-cache" / "2.17.1"
    cache.mkdir(parents=True)
    (cache / "pants").write_text(FAKE_PANTS)
    (cache / "pants").chmod(0o755)
    (cache / "pex").write_text("")
    (cache / "launch.env").write_text(
        f"pants_bin={cache}/pants\npython_dir=/usr/bin\nlibdir=\n"
        f"pex_known_version=v2.1.137|linux_x86_64|0|0\npex_url=file://{cache}/pex\n"
    )
    env = {"MMETOOLS_PANTS_CACHE": str(tmp_path / "pants-cache"), "MMETOOLS_PANTS_PYTHON": ""}
    return repo, env


def test_first_run_of_a_fresh_clone_creates_the_venv_with_progress(tmp_path: Path) -> None:
    repo, env = _launcher_repo(
        tmp_path, "mkdir -p .venv/bin && touch .venv/bin/mmetools && chmod +x .venv/bin/mmetools"
    )
    completed = _pants("list", "::", cwd=repo, **env)
    assert completed.returncode == 0, completed.stderr
    assert "no .venv yet: creating it with ci/bootstrap" in completed.stderr
    assert ".venv ready in" in completed.stderr
    assert completed.stdout.strip() == "fake pants list ::"
    # The second run finds it and goes straight to Pants.
    again = _pants("list", "::", cwd=repo, **env)
    assert "ci/bootstrap" not in again.stderr
    assert again.stdout.strip() == "fake pants list ::"


def test_a_failing_bootstrap_stops_before_pants(tmp_path: Path) -> None:
    repo, env = _launcher_repo(tmp_path, "echo 'uv: cannot reach the index' >&2; exit 3")
    completed = _pants("list", "::", cwd=repo, **env)
    assert completed.returncode == 1
    assert "uv: cannot reach the index" in completed.stderr
    assert "ci/bootstrap failed" in completed.stderr
    assert "fake pants" not in completed.stdout


@pytest.mark.parametrize(
    "args", [["test", "::"], ["--changed-since=HEAD", "test"], ["help", "test"], ["list"]]
)
def test_targets_changed_since_or_a_goal_without_targets_reach_pants(
    tmp_path: Path, args: list[str]
) -> None:
    repo, env = _launcher_repo(tmp_path, "exit 1")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "mmetools").write_text("")
    (repo / ".venv" / "bin" / "mmetools").chmod(0o755)
    completed = _pants(*args, cwd=repo, **env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"fake pants {' '.join(args)}"
