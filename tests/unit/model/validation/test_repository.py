"""mmetools.model.validation.repository: configs that do not parse or are not UTF-8, and version
folders Triton ignores; validation goes on with the other models."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.model.validation import validate_repository
from support.model.validation_support import (
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


# --- folders without config.pbtxt (Triton's auto-complete) -----------------------------------

AUTO_COMPLETING_MODEL_PY = """\
class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        return config
"""


def _without_config(tmp_path: Path, model: str) -> Path:
    root = write_repository(tmp_path / "repo", BASE)
    (root / model / "config.pbtxt").unlink()
    return root


def test_python_step_without_config_that_auto_completes_is_a_warning(tmp_path: Path) -> None:
    root = _without_config(tmp_path, "foo_preprocessing")
    (root / "foo_preprocessing" / "1" / "model.py").write_text(AUTO_COMPLETING_MODEL_PY)
    assert lines(validate_repository(root)) == [
        "repo/foo_preprocessing: warning: no config.pbtxt: Triton fills it in from "
        "foo_preprocessing/1/model.py (backend python), which needs auto-complete (on unless "
        "--disable-auto-complete-config); its inputs and outputs cannot be checked statically: "
        "add foo_preprocessing/config.pbtxt"
    ]


def test_python_step_without_config_nor_auto_complete_is_an_error(tmp_path: Path) -> None:
    root = _without_config(tmp_path, "foo_preprocessing")
    assert lines(validate_repository(root)) == [
        "repo/foo_preprocessing: no config.pbtxt, and foo_preprocessing/1/model.py defines no "
        "auto_complete_config: Triton serves it with the python backend but without inputs or "
        "outputs; add foo_preprocessing/config.pbtxt"
    ]


def test_onnx_step_without_config_is_a_warning(tmp_path: Path) -> None:
    root = _without_config(tmp_path, "foo_inferencer")
    (root / "foo_inferencer" / "1" / "model.onnx").write_bytes(b"onnx")
    problems = validate_repository(root)
    assert [(p.severity, str(p.path)) for p in problems] == [
        ("warning", str(root / "foo_inferencer"))
    ]
    assert "backend onnxruntime" in problems[0].message


def test_config_inside_the_version_folder_is_refused(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    pipeline = root / "foo_pipeline"
    (pipeline / "config.pbtxt").rename(pipeline / "1" / "config.pbtxt")
    assert lines(validate_repository(root)) == [
        "repo/foo_pipeline: no config.pbtxt and no model file Triton recognizes (model.onnx, "
        "model.plan, model.pt, model.py, model.savedmodel) in a version folder: Triton cannot "
        "determine its backend; repo/foo_pipeline/1/config.pbtxt is inside a version folder: "
        "move it to foo_pipeline/config.pbtxt"
    ]


def test_folders_that_are_no_models_are_left_alone(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE, files=["tests/fixtures/a.json", ".git/x"])
    assert lines(validate_repository(root)) == []


# --- symlinks, sizes (issue 11) ----------------------------------------------------------------


def test_step_folder_symlinked_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = write_repository(tmp_path / "elsewhere", {"foo_inferencer": BASE["foo_inferencer"]})
    root = write_repository(
        tmp_path / "repo", {k: v for k, v in BASE.items() if k != "foo_inferencer"}
    )
    (root / "foo_inferencer").symlink_to(outside / "foo_inferencer")
    assert lines(validate_repository(root)) == [
        "repo/foo_inferencer: is a symlink to elsewhere/foo_inferencer, outside repo; put the "
        "folder itself there (an artifact holds files, never links)"
    ]


def test_step_folder_symlinked_inside_the_repository_is_followed(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    (root / "foo_inferencer").rename(root / "real_inferencer")
    (root / "foo_inferencer").symlink_to("real_inferencer")
    problems = lines(validate_repository(root))
    assert not any("symlink" in p for p in problems)


def test_version_folder_symlinked_outside_is_refused(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    version = root / "foo_inferencer" / "1"
    version.rename(tmp_path / "v1")
    version.symlink_to(tmp_path / "v1")
    assert lines(validate_repository(root)) == [
        "repo/foo_inferencer/1: is a symlink to v1, outside repo; put the folder itself there "
        "(an artifact holds files, never links)"
    ]


def test_huge_config_is_refused_without_reading_it(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    config = root / "foo_inferencer" / "config.pbtxt"
    with config.open("ab") as handle:
        handle.truncate(1 << 30)  # 1 GiB, sparse: reading it whole took 6.3 GB of memory
    assert lines(validate_repository(root)) == [
        f"{INF_PATH}: larger than 1 MiB, the most a config.pbtxt may hold here; it is not a "
        "Triton model configuration"
    ]


def test_garbage_line_is_not_echoed_whole(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    config = root / "foo_inferencer" / "config.pbtxt"
    config.write_text("x" * 900_000 + "\n", encoding="utf-8")
    (problem,) = validate_repository(root)
    assert problem.path == config and problem.line == 1
    assert len(str(problem)) < 400
    assert "more characters)" in problem.message
