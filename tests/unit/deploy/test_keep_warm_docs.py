"""The keep-warm schedules in docs/endpoints.md are valid CI configuration that runs the real
command (a broken example would be copied into many repositories)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from conftest import REPO_ROOT
from mmetools.cli import main

DOC = REPO_ROOT / "docs" / "endpoints.md"


def _yaml_blocks() -> list[dict[Any, Any]]:
    text = DOC.read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _warm_command(script: str) -> list[str]:
    argv = shlex.split(script)
    assert argv[0] == ".venv/bin/mmetools"
    return argv[1:]


def _check_parses(argv: list[str]) -> None:
    """The command line is one mmetools accepts: with --help appended, click parses every option
    first (an unknown one is exit 2) and then prints the help instead of running."""
    assert argv[:3] == ["smoke", "production", "--warm"]
    assert main([*argv, "--help"]) == 0


def test_github_and_gitlab_keep_warm_examples_are_valid_and_run_smoke_warm() -> None:
    github, gitlab = _yaml_blocks()
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    trigger: dict[str, Any] = github["on"] if "on" in github else github[True]
    assert trigger["schedule"][0]["cron"].split()[1] == "*"  # hourly
    steps = github["jobs"]["warm"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert runs[0] == "ci/bootstrap"
    _check_parses(_warm_command(runs[-1]))
    job = gitlab["keep-warm"]
    assert '$CI_PIPELINE_SOURCE == "schedule"' in job["rules"][0]["if"]
    _check_parses(_warm_command(job["script"][-1]))
    assert job["artifacts"]["reports"]["junit"] == "dist/reports/keep-warm.xml"
