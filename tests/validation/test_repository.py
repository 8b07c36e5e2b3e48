"""mmetools.validation.repository: configs that do not parse or are not UTF-8, and version
folders Triton ignores; validation goes on with the other models."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.validation import validate_repository
from validation.support import (
    BASE,
    INF_PATH,
    PIPE_PATH,
    PRE_PATH,
    Case,
    check_case,
    lines,
    write_repository,
)

CASES = [
    Case(
        "ensemble with dynamic_batching",
        edits=[("foo_pipeline", "max_batch_size: 8", "max_batch_size: 8 dynamic_batching { }")],
        expected=[
            f'{PIPE_PATH}:9:1: invalid config.pbtxt: Field "ensemble_scheduling" is specified '
            'along with field "dynamic_batching", another member of oneof "scheduling_choice" for '
            'message type "inference.ModelConfig". (a model sets at most one of '
            "dynamic_batching, sequence_batching and ensemble_scheduling; an ensemble schedules "
            "its steps itself)"
        ],
    ),
    Case(
        "ensemble with sequence_batching",
        edits=[("foo_pipeline", "max_batch_size: 8", "max_batch_size: 8 sequence_batching { }")],
        expected=[
            f'{PIPE_PATH}:9:1: invalid config.pbtxt: Field "ensemble_scheduling" is specified '
            'along with field "sequence_batching", another member of oneof "scheduling_choice" for '
            'message type "inference.ModelConfig". (a model sets at most one of '
            "dynamic_batching, sequence_batching and ensemble_scheduling; an ensemble schedules "
            "its steps itself)"
        ],
    ),
    Case(
        "syntax error, validation goes on with the other models",
        edits=[
            ("foo_preprocessing", "max_batch_size: 8", "max_batch_size: eight"),
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 4"),
        ],
        expected=[
            f"{PIPE_PATH}: max_batch_size 8 of the ensemble is larger than max_batch_size 4 of "
            "step 2 (foo_inferencer)",
            f"{PRE_PATH}:3:17: invalid config.pbtxt: 'max_batch_size: eight': Couldn't parse "
            "integer: eight",
        ],
    ),
    Case(
        "unknown field",
        edits=[("foo_inferencer", "max_batch_size: 8", "max_batch_size: 8\nmax_batch: 4")],
        expected=[
            f'{INF_PATH}:4:1: invalid config.pbtxt: Message type "inference.ModelConfig" has '
            'no field named "max_batch".'
        ],
    ),
    Case(
        "version folder with a leading zero",
        versions={"foo_inferencer": ["01"]},
        expected=[
            "repo/foo_inferencer/01: warning: version folder '01' has a leading zero; "
            "Triton ignores it",
            f"{INF_PATH}: no version folder (such as foo_inferencer/1/); "
            "Triton finds no version to load",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_repository_rules(tmp_path: Path, case: Case) -> None:
    check_case(tmp_path, case)


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    (root / "foo_inferencer" / "config.pbtxt").write_bytes(b'name: "foo_\xff"\n')
    assert lines(validate_repository(root)) == [
        f"{INF_PATH}: not UTF-8 text (invalid start byte at byte 11)"
    ]
