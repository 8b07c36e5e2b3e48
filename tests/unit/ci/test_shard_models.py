"""ci/shard_models.py: the changed models dealt over CI shards (the Pants query itself runs in
tests/{unit,integration}/pants/test_pants.py's listing test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "ci"))
from shard_models import main, shard_of, shards  # noqa: E402

TARGETS = [f"models/m{i}:m{i}" for i in (3, 1, 4, 0, 2)]


def test_shards_cover_every_target_once_in_a_stable_order() -> None:
    dealt = shards(TARGETS, 2)
    assert dealt == [
        ["models/m0:m0", "models/m2:m2", "models/m4:m4"],
        ["models/m1:m1", "models/m3:m3"],
    ]
    assert sorted(t for s in dealt for t in s) == sorted(TARGETS)


def test_no_empty_shard_when_fewer_models_than_shards() -> None:
    assert shards(TARGETS[:2], 8) == [["models/m1:m1"], ["models/m3:m3"]]
    assert shards([], 8) == []


def test_gitlab_indexes_agree_with_the_matrix() -> None:
    assert [shard_of(TARGETS, i, 2) for i in (1, 2)] == shards(TARGETS, 2)
    assert shard_of(TARGETS, 8, 8) == []


@pytest.mark.parametrize("argv", [["--since", "x", "--index", "0", "--total", "2"],
                                  ["--since", "x", "--matrix", "0"],
                                  ["--since", "x", "--index", "1"]])  # fmt: skip
def test_bad_shard_numbers_are_usage_errors(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shard_models.changed_models", lambda since: list(TARGETS))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_matrix_output_is_a_github_output_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shard_models.changed_models", lambda since: list(TARGETS))
    assert main(["--since", "origin/main", "--matrix", "2"]) == 0
    assert capsys.readouterr().out == (
        'shards=["models/m0:m0 models/m2:m2 models/m4:m4", "models/m1:m1 models/m3:m3"]\n'
    )
