"""`endpoint plan STAGE --detailed-exit-code` against moto_server, as a drift check in CI runs it:
0 when nothing differs, 2 when apply would change something, 1 on any failure (a usage error
included: without the option those exit 2, which a drift job would take for drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.cli import main
from support.deploy.declarations import PRODUCTION, STAGING, write_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PLAN = ["endpoint", "plan", "staging", "--detailed-exit-code"]


def test_exit_code_says_whether_the_endpoint_drifted_moto(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(tmp_path, STAGING)
    monkeypatch.chdir(tmp_path)
    assert main(PLAN) == 2  # nothing exists yet
    assert "+ create_endpoint: endpoint acme-staging" in capsys.readouterr().out
    assert main(["endpoint", "plan", "staging"]) == 0  # without the option: 0 either way
    assert main(["endpoint", "apply", "staging", "--poll-seconds", "0.05"]) == 0
    capsys.readouterr()
    assert main(PLAN) == 0
    assert "acme-staging: up to date, nothing to do" in capsys.readouterr().out
    write_repo(tmp_path, STAGING.replace("max_instances = 2", "max_instances = 3"))
    assert main(PLAN) == 2
    assert "scalable target: 1..2 -> 1..3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "text", "expected"),
    [
        pytest.param(PLAN, STAGING.replace("min_instances = 1", "min_instances = 0"),
                     "min_instances = 0: must be 1 or more", id="bad_declaration"),
        pytest.param(PLAN, PRODUCTION,
                     r"no [endpoints.staging] is declared", id="undeclared_stage"),
        pytest.param([*PLAN, "--no-such-option"], STAGING, "No such option", id="usage_error"),
    ],
)  # fmt: skip
def test_every_failure_exits_1_not_2_moto(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], text: str, expected: str,
) -> None:  # fmt: skip
    write_repo(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert expected in capsys.readouterr().err
    without = [arg for arg in argv if arg != "--detailed-exit-code"]
    assert main(without) == 2  # bad input, as every command reports it


def test_no_region_exits_1_naming_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    write_repo(tmp_path, STAGING)
    monkeypatch.chdir(tmp_path)
    assert main(PLAN) == 1
    assert "set AWS_DEFAULT_REGION" in capsys.readouterr().err
