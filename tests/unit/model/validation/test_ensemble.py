"""mmetools.model.validation.ensemble: the steps of an ensemble (model, version, batch size, map names)
and ensembles that contain themselves, each asserting the exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.model.validation import validate_repository
from support.model.validation_support import (
    BASE,
    INF_PATH,
    PIPE,
    PIPE_PATH,
    WRAPPER,
    X_TO_Y,
    Case,
    check_case,
    edited,
    lines,
    pipe_step2,
    write_repository,
)

CASES = [
    Case(
        "step without model_name",
        edits=[pipe_step2("model_version: -1")],
        expected=[f"{PIPE_PATH}: step 2 has no model_name"],
    ),
    Case(
        "step without input_map",
        edits=[("foo_pipeline", 'input_map { key: "X" value: "pre" }', "")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) has no input_map",
            f"{PIPE_PATH}: step 2 (foo_inferencer) leaves input 'X' of foo_inferencer unmapped; "
            "add it to input_map",
            f"{PIPE_PATH}: ensemble tensor 'pre', written by step 1 (foo_preprocessing) from its "
            "output 'PRE', is not used by any step or ensemble output",
        ],
    ),
    Case(
        "step without output_map",
        edits=[("foo_pipeline", 'output_map { key: "Y" value: "scores" }', "")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) has no output_map",
            f"{PIPE_PATH}: step 3 (foo_postprocessing) reads ensemble tensor 'scores' for input "
            "'SCORES', but no step writes 'scores' and it is not an ensemble input",
        ],
    ),
    Case(
        "unknown step model",
        edits=[pipe_step2('model_name: "foo_infer" model_version: -1')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_infer): model 'foo_infer' is not in the repository "
            "(models: foo_inferencer, foo_pipeline, foo_postprocessing, foo_preprocessing)"
        ],
    ),
    Case(
        "step version that does not exist",
        edits=[pipe_step2('model_name: "foo_inferencer" model_version: 2')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 2 of foo_inferencer, "
            "which does not exist (versions: 1)"
        ],
    ),
    Case(
        "step version the version_policy does not load",
        edits=[pipe_step2('model_name: "foo_inferencer" model_version: 1')],
        versions={"foo_inferencer": ["1", "2"]},
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 1 of foo_inferencer, "
            "which its version_policy does not load (loaded: 2)"
        ],
    ),
    Case(
        "explicit version that exists",
        edits=[
            pipe_step2('model_name: "foo_inferencer" model_version: 1'),
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 8 version_policy { all { } }"),
        ],
        versions={"foo_inferencer": ["1", "2"]},
    ),
    Case(
        "step without model_version asks for version 0",
        edits=[pipe_step2('model_name: "foo_inferencer"')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 0 of foo_inferencer, which "
            "does not exist (versions: 1); an omitted model_version means 0, use "
            "model_version: -1 for the latest"
        ],
    ),
    Case(
        "input_map naming an input the model does not have",
        edits=[("foo_pipeline", 'key: "X" value: "pre"', 'key: "Z" value: "pre"')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'Z', "
            "but foo_inferencer has no such input (inputs: X)",
            f"{PIPE_PATH}: step 2 (foo_inferencer) leaves input 'X' of foo_inferencer unmapped; "
            "add it to input_map",
        ],
    ),
    Case(
        "output_map naming an output the model does not have",
        edits=[("foo_pipeline", 'key: "Y" value: "scores"', 'key: "OUT" value: "scores"')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps output 'OUT' to ensemble tensor "
            "'scores', but foo_inferencer has no such output (outputs: Y)"
        ],
    ),
    Case(
        "step input left unmapped",
        edits=[
            (
                "foo_inferencer",
                "dims: [ 4 ] }",
                'dims: [ 4 ] }, { name: "MASK" data_type: TYPE_BOOL dims: [ 4 ] }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) leaves input 'MASK' of foo_inferencer "
            "unmapped; add it to input_map"
        ],
    ),
    Case(
        "optional step input may stay unmapped",
        edits=[
            (
                "foo_inferencer",
                "dims: [ 4 ] }",
                'dims: [ 4 ] }, { name: "MASK" data_type: TYPE_BOOL dims: [ 4 ] optional: true }',
            )
        ],
    ),
    Case(
        "ensemble max_batch_size larger than a step's",
        edits=[("foo_inferencer", "max_batch_size: 8", "max_batch_size: 4")],
        expected=[
            f"{PIPE_PATH}: max_batch_size 8 of the ensemble is larger than max_batch_size 4 of "
            "step 2 (foo_inferencer)"
        ],
    ),
    Case(
        "input_map key repeated",
        edits=[
            (
                "foo_pipeline",
                'input_map { key: "X" value: "pre" }',
                'input_map { key: "X" value: "pre" } input_map { key: "X" value: "RAW" }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: warning: step 2 (foo_inferencer): input_map lists model input 'X' "
            "2 times ('pre', 'RAW'); protobuf keeps only the last ('RAW') and Triton silently "
            "ignores the others",
            f"{PIPE_PATH}: ensemble tensor 'pre', written by step 1 (foo_preprocessing) from "
            "its output 'PRE', is not used by any step or ensemble output",
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'RAW' to input 'X' of "
            "foo_inferencer, which expects TYPE_FP32 but 'RAW' is TYPE_STRING "
            "(ensemble input 'RAW')",
        ],
    ),
    Case(
        "output_map key repeated",
        edits=[
            (
                "foo_pipeline",
                'output_map { key: "SCORE" value: "SCORE" }',
                'output_map { key: "SCORE" value: "SCORE" }\n'
                '    output_map { key: "LABEL" value: "LABEL2" }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: warning: step 3 (foo_postprocessing): output_map lists model output "
            "'LABEL' 2 times ('LABEL', 'LABEL2'); protobuf keeps only the last ('LABEL2') and "
            "Triton silently ignores the others",
            f"{PIPE_PATH}: ensemble output 'LABEL' is not written by any step "
            "(no output_map maps to 'LABEL')",
            f"{PIPE_PATH}: ensemble tensor 'LABEL2', written by step 3 (foo_postprocessing) "
            "from its output 'LABEL', is not used by any step or ensemble output",
        ],
    ),
    Case(
        "two outputs of one step mapped to the same tensor",
        edits=[("foo_pipeline", 'key: "SCORE" value: "SCORE"', 'key: "SCORE" value: "LABEL"')],
        expected=[
            f"{PIPE_PATH}: step 3 (foo_postprocessing) maps outputs 'LABEL', 'SCORE' to the "
            "same ensemble tensor 'LABEL'",
            f"{PIPE_PATH}: ensemble output 'SCORE' is not written by any step "
            "(no output_map maps to 'SCORE')",
        ],
    ),
    Case(
        "ensemble without steps",
        edits=[
            ("foo_pipeline", PIPE[PIPE.index("ensemble_scheduling") :], "ensemble_scheduling { }\n")
        ],
        expected=[f"{PIPE_PATH}: ensemble_scheduling has no step; an ensemble needs at least one"],
    ),
    Case(
        "nested ensemble",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace(
                "{step}", "foo_inferencer"
            )
        },
        edits=[pipe_step2('model_name: "foo_wrapper" model_version: -1')],
    ),
    Case(
        "ensemble containing itself",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace("{step}", "foo_wrapper")
        },
        edits=[pipe_step2('model_name: "foo_wrapper" model_version: -1')],
        expected=[
            "repo/foo_wrapper/config.pbtxt: circular dependency between ensembles: "
            "foo_wrapper -> foo_wrapper"
        ],
    ),
    Case(
        "cycle through nested ensembles",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace("{step}", "foo_inner"),
            "foo_inner": WRAPPER.replace("{name}", "foo_inner").replace("{step}", "foo_wrapper"),
        },
        edits=[pipe_step2('model_name: "foo_wrapper" model_version: -1')],
        expected=[
            "repo/foo_inner/config.pbtxt: circular dependency between ensembles: "
            "foo_inner -> foo_wrapper -> foo_inner"
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_repository_rules(tmp_path: Path, case: Case) -> None:
    check_case(tmp_path, case)


def test_model_folder_without_config_named_by_a_step(tmp_path: Path) -> None:
    configs = edited(BASE, [pipe_step2('model_name: "foo_extra" model_version: -1')])
    root = write_repository(tmp_path / "repo", configs)
    (root / "foo_extra" / "1").mkdir(parents=True)
    # Reported once, on the folder, not again on the step that names it.
    assert lines(validate_repository(root)) == [
        "repo/foo_extra: no config.pbtxt and no model file Triton recognizes (model.onnx, "
        "model.plan, model.pt, model.py, model.savedmodel) in a version folder: Triton cannot "
        "determine its backend"
    ]


def test_step_of_a_model_whose_config_does_not_parse_is_not_reported_twice(
    tmp_path: Path,
) -> None:
    configs = edited(BASE, [("foo_inferencer", "input [", "input [[")])
    root = write_repository(tmp_path / "repo", configs)
    problems = validate_repository(root)
    assert [p.location for p in problems] == [f"{INF_PATH}:4:8"]


# --- large graphs (issue 11: these raised RecursionError) --------------------------------------


def _x_to_y_ensemble(name: str, steps: list[str]) -> str:
    listed = ",\n".join(
        f'  {{ model_name: "{s}" model_version: -1 input_map {{ key: "X" value: "X" }} '
        f'output_map {{ key: "Y" value: "Y" }} }}'
        for s in steps
    )
    return WRAPPER.split("ensemble_scheduling")[0].replace("{name}", name) + (
        f"ensemble_scheduling {{ step [\n{listed}\n] }}\n"
    )


def test_cycle_of_1000_steps_is_reported_not_a_recursion_error(tmp_path: Path) -> None:
    count = 1000
    steps = ",\n".join(
        f'  {{ model_name: "foo_step" model_version: -1 '
        f'input_map {{ key: "X" value: "t{(i - 1) % count}" }} '
        f'output_map {{ key: "Y" value: "t{i}" }} }}'
        for i in range(count)
    )
    pipe = (
        WRAPPER.split("ensemble_scheduling")[0].replace("{name}", "foo_pipeline")
        + f"ensemble_scheduling {{ step [\n{steps}\n] }}\n"
    )
    root = write_repository(
        tmp_path / "repo", {"foo_step": X_TO_Y.replace("{name}", "foo_step"), "foo_pipeline": pipe}
    )
    problems = lines(validate_repository(root))
    cycle = [p for p in problems if "steps form a cycle" in p]
    assert len(cycle) == 1 and "step 1 (foo_step) -> step 2 (foo_step)" in cycle[0]


@pytest.mark.parametrize("depth", [600])
def test_deeply_nested_ensembles_validate(tmp_path: Path, depth: int) -> None:
    configs = {"leaf": X_TO_Y.replace("{name}", "leaf")}
    for level in range(depth):
        inner = "leaf" if level == 0 else f"nest{level - 1}"
        configs[f"nest{level}"] = _x_to_y_ensemble(f"nest{level}", [inner])
    root = write_repository(tmp_path / "repo", configs)
    assert lines(validate_repository(root)) == []


def test_cycle_of_1000_ensembles_is_reported(tmp_path: Path) -> None:
    count = 1000
    configs = {f"e{i}": _x_to_y_ensemble(f"e{i}", [f"e{(i + 1) % count}"]) for i in range(count)}
    root = write_repository(tmp_path / "repo", configs)
    cycles = [p for p in lines(validate_repository(root)) if "circular dependency" in p]
    # one report, naming the cycle from its first member; clipped like every long message
    assert len(cycles) == 1
    assert cycles[0].startswith("repo/e0/config.pbtxt: circular dependency between ensembles: ")
    assert " e0 -> e1 -> e2 -> " in cycles[0] and cycles[0].endswith("more characters)")
