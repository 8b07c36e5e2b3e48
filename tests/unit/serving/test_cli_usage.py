"""Usage errors of `mmetools endpoint serve` and the fleet load test: one message, exit 2, no
server started and no temporary folder left."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mmetools.cli import main


def test_serve_refuses_an_unsupported_models_from_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["endpoint", "serve", "--models-from", "ftp://host/models"]) == 2
    assert "--models-from = 'ftp://host/models': unsupported destination" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--models", "a_1.tar.gz", "--prefix", "file:x"], "give --models or --prefix, not both"),
        (["--models", "a_1.tar.gz", "--mix", "zipf:x"], "--mix 'zipf:x': write zipf:S"),
        (["--models", "a_1.tar.gz", "--mix", "gauss"], "not uniform, zipf:S or a CSV file"),
    ],
)
def test_fleet_load_test_usage_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", "--endpoint", "e", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_the_capacity_plan_is_endpoint_capacity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `endpoint plan STAGE` is the declared endpoint's diff now (docs/endpoints.md).
    run = tmp_path / "run.fleet.json"
    run.write_text("{}")
    assert main(["endpoint", "capacity", str(run)]) == 2
    assert "not a fleet run of the local endpoint" in capsys.readouterr().err
