"""mmetools.model.validation.ensemble_flow: data flow between the steps (producers and consumers, data
types and shapes, cycles among steps, decoupled models), each asserting the exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.model.validation_support import (
    PIPE_PATH,
    POST,
    WRAPPER,
    X_TO_Y,
    Case,
    Edit,
    check_case,
    pipe_step2,
)

# foo_inferencer turns decoupled, and foo_postprocessing also reads the ensemble input RAW: step 3
# then merges a decoupled model's output with a tensor of the ensemble request.
DECOUPLED_INFERENCER_MERGED_WITH_RAW: list[Edit] = [
    (
        "foo_inferencer",
        "max_batch_size: 8",
        "max_batch_size: 8 model_transaction_policy { decoupled: true }",
    ),
    (
        "foo_postprocessing",
        "dims: [ 2 ] } ]",
        'dims: [ 2 ] }, { name: "RAW" data_type: TYPE_STRING dims: [ 1 ] } ]',
    ),
    (
        "foo_pipeline",
        'input_map { key: "SCORES" value: "scores" }',
        'input_map { key: "SCORES" value: "scores" } input_map { key: "RAW" value: "RAW" }',
    ),
]

CASES = [
    Case(
        "data type mismatch between steps",
        edits=[("foo_inferencer", "TYPE_FP32", "TYPE_INT32")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
            "foo_inferencer, which expects TYPE_INT32 but 'pre' is TYPE_FP32 "
            "(output 'PRE' of step 1 (foo_preprocessing))"
        ],
    ),
    Case(
        "shape mismatch between steps",
        edits=[("foo_inferencer", "dims: [ 4 ]", "dims: [ 5 ]")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
            "foo_inferencer, which expects shape [5] but 'pre' has shape [4] "
            "(output 'PRE' of step 1 (foo_preprocessing))"
        ],
    ),
    Case(
        "rank mismatch between steps",
        edits=[("foo_inferencer", "dims: [ 4 ]", "dims: [ 2, 2 ]")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
            "foo_inferencer, which expects shape [2,2] but 'pre' has shape [4] "
            "(output 'PRE' of step 1 (foo_preprocessing))"
        ],
    ),
    Case(
        "variable-size dimension matches any size",
        edits=[("foo_inferencer", "dims: [ 4 ]", "dims: [ -1 ]")],
    ),
    Case(
        # Triton loads it (ValidateTensorConsistency also compares dims without the batch
        # dimension) and reshapes batch-1 tensors between the steps: larger batches fail.
        "non-batching step in a batching ensemble",
        edits=[("foo_inferencer", "max_batch_size: 8", "max_batch_size: 0")],
        expected=[
            f"{PIPE_PATH}: warning: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input "
            "'X' of foo_inferencer, which expects shape [4] but 'pre' has shape [batch,4] "
            "(output 'PRE' of step 1 (foo_preprocessing)); Triton loads this, but between a "
            "batching and a non-batching model it reshapes only batch-1 tensors, so requests "
            "with a batch above 1 (max_batch_size is 8) fail",
            f"{PIPE_PATH}: warning: step 3 (foo_postprocessing) maps ensemble tensor 'scores' to "
            "input 'SCORES' of foo_postprocessing, which expects shape [batch,2] but 'scores' "
            "has shape [2] (output 'Y' of step 2 (foo_inferencer)); Triton loads this, but "
            "between a batching and a non-batching model it reshapes only batch-1 tensors, so "
            "requests with a batch above 1 (max_batch_size is 8) fail",
        ],
    ),
    Case(
        "non-batching step in an ensemble of batch 1",
        edits=[
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 0"),
            ("foo_pipeline", "max_batch_size: 8", "max_batch_size: 1"),
        ],
    ),
    Case(
        "non-batching step whose dims differ also without the batch dimension",
        edits=[
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 0"),
            ("foo_inferencer", "dims: [ 4 ]", "dims: [ 5 ]"),
        ],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
            "foo_inferencer, which expects shape [5] but 'pre' has shape [batch,4] "
            "(output 'PRE' of step 1 (foo_preprocessing))",
            f"{PIPE_PATH}: warning: step 3 (foo_postprocessing) maps ensemble tensor 'scores' to "
            "input 'SCORES' of foo_postprocessing, which expects shape [batch,2] but 'scores' "
            "has shape [2] (output 'Y' of step 2 (foo_inferencer)); Triton loads this, but "
            "between a batching and a non-batching model it reshapes only batch-1 tensors, so "
            "requests with a batch above 1 (max_batch_size is 8) fail",
        ],
    ),
    Case(
        "non-batching step declaring the batch dimension itself",
        edits=[
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 0"),
            ("foo_inferencer", "dims: [ 4 ]", "dims: [ -1, 4 ]"),
            ("foo_inferencer", "dims: [ 2 ]", "dims: [ -1, 2 ]"),
        ],
    ),
    Case(
        "ensemble output declared with another type",
        edits=[
            (
                "foo_pipeline",
                'name: "SCORE" data_type: TYPE_FP32',
                'name: "SCORE" data_type: TYPE_FP64',
            )
        ],
        expected=[
            f"{PIPE_PATH}: step 3 (foo_postprocessing) maps output 'SCORE' of foo_postprocessing "
            "to ensemble output 'SCORE', which the ensemble declares as TYPE_FP64 but "
            "foo_postprocessing produces TYPE_FP32"
        ],
    ),
    Case(
        "ensemble output declared with another shape",
        edits=[("foo_pipeline", "TYPE_FP32 dims: [ 1 ]", "TYPE_FP32 dims: [ 3 ]")],
        expected=[
            f"{PIPE_PATH}: step 3 (foo_postprocessing) maps output 'SCORE' of foo_postprocessing "
            "to ensemble output 'SCORE', which the ensemble declares as shape [3] but "
            "foo_postprocessing produces shape [1]"
        ],
    ),
    Case(
        "ensemble input with another type than the step reading it",
        edits=[
            (
                "foo_pipeline",
                'name: "RAW" data_type: TYPE_STRING',
                'name: "RAW" data_type: TYPE_UINT8',
            )
        ],
        expected=[
            f"{PIPE_PATH}: step 1 (foo_preprocessing) maps ensemble tensor 'RAW' to input 'RAW' "
            "of foo_preprocessing, which expects TYPE_STRING but 'RAW' is TYPE_UINT8 "
            "(ensemble input 'RAW')"
        ],
    ),
    Case(
        "ensemble input compared through its reshape",
        edits=[
            (
                "foo_pipeline",
                'name: "RAW" data_type: TYPE_STRING dims: [ 1 ]',
                'name: "RAW" data_type: TYPE_STRING dims: [ 1 ] reshape { shape: [ ] }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: step 1 (foo_preprocessing) maps ensemble tensor 'RAW' to input 'RAW' "
            "of foo_preprocessing, which expects shape [1] but 'RAW' has shape [] "
            "(ensemble input 'RAW')"
        ],
    ),
    Case(
        "tensor written by two steps",
        extra={
            "foo_scorer": POST.replace("foo_postprocessing", "foo_scorer"),
        },
        edits=[
            (
                "foo_pipeline",
                'output_map { key: "SCORE" value: "SCORE" } }',
                'output_map { key: "SCORE" value: "SCORE" } },\n'
                '  { model_name: "foo_scorer" model_version: -1 input_map { key: "SCORES" value: "scores" }\n'
                '    output_map { key: "LABEL" value: "LABEL" }\n'
                '    output_map { key: "SCORE" value: "SCORE2" } }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: ensemble tensor 'LABEL' is written by both step 3 "
            "(foo_postprocessing) and step 4 (foo_scorer); a tensor can appear in only one "
            "output_map",
            f"{PIPE_PATH}: ensemble tensor 'SCORE2', written by step 4 (foo_scorer) from its "
            "output 'SCORE', is not used by any step or ensemble output",
        ],
    ),
    Case(
        "step writing an ensemble input",
        edits=[("foo_pipeline", 'key: "PRE" value: "pre"', 'key: "PRE" value: "RAW"')],
        expected=[
            f"{PIPE_PATH}: step 1 (foo_preprocessing) writes ensemble tensor 'RAW', which is an "
            "ensemble input; a tensor can have only one producer",
            f"{PIPE_PATH}: step 2 (foo_inferencer) reads ensemble tensor 'pre' for input 'X', "
            "but no step writes 'pre' and it is not an ensemble input",
        ],
    ),
    Case(
        "ensemble input never used",
        edits=[
            (
                "foo_pipeline",
                "dims: [ 1 ] } ]",
                'dims: [ 1 ] }, { name: "EXTRA" data_type: TYPE_FP32 dims: [ 1 ] } ]',
            )
        ],
        expected=[f"{PIPE_PATH}: ensemble input 'EXTRA' is not used by any step"],
    ),
    Case(
        "ensemble output never produced",
        edits=[
            (
                "foo_pipeline",
                'name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }',
                'name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] },\n'
                '  { name: "EXTRA" data_type: TYPE_FP32 dims: [ 1 ] }',
            )
        ],
        expected=[
            f"{PIPE_PATH}: ensemble output 'EXTRA' is not written by any step "
            "(no output_map maps to 'EXTRA')"
        ],
    ),
    Case(
        "intermediate tensor consumed but never produced",
        edits=[("foo_pipeline", 'key: "X" value: "pre"', 'key: "X" value: "prex"')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) reads ensemble tensor 'prex' for input 'X', "
            "but no step writes 'prex' and it is not an ensemble input",
            f"{PIPE_PATH}: ensemble tensor 'pre', written by step 1 (foo_preprocessing) from "
            "its output 'PRE', is not used by any step or ensemble output",
        ],
    ),
    Case(
        "cycle between steps of one ensemble",
        extra={
            "foo_loop": X_TO_Y.replace("{name}", "foo_loop")
            .replace('"X"', '"IN"')
            .replace('"Y"', '"OUT"')
            .replace("[ 4 ]", "[ 9 ]")
            .replace("[ 2 ]", "[ 4 ]")
            .replace("[ 9 ]", "[ 2 ]")
        },
        edits=[
            ("foo_pipeline", 'key: "X" value: "pre"', 'key: "X" value: "looped"'),
            (
                "foo_pipeline",
                'output_map { key: "SCORE" value: "SCORE" } }',
                'output_map { key: "SCORE" value: "SCORE" } },\n'
                '  { model_name: "foo_loop" model_version: -1 input_map { key: "IN" value: "scores" }\n'
                '    output_map { key: "OUT" value: "looped" } }',
            ),
        ],
        expected=[
            f"{PIPE_PATH}: ensemble tensor 'pre', written by step 1 (foo_preprocessing) from "
            "its output 'PRE', is not used by any step or ensemble output",
            f"{PIPE_PATH}: steps form a cycle, so none of them can run: step 2 (foo_inferencer) "
            "-> step 4 (foo_loop) -> step 2 (foo_inferencer)",
        ],
    ),
    Case(
        "step merging outputs of a decoupled model with other inputs",
        edits=DECOUPLED_INFERENCER_MERGED_WITH_RAW,
        expected=[
            f"{PIPE_PATH}: step 3 (foo_postprocessing) receives inputs originated from different "
            "decoupled models: 'scores' from decoupled step 2 (foo_inferencer), 'RAW' from the "
            "ensemble request"
        ],
    ),
    Case(
        "decoupled nested ensemble merged with other inputs",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace(
                "{step}", "foo_inferencer"
            )
        },
        edits=[
            pipe_step2('model_name: "foo_wrapper" model_version: -1'),
            *DECOUPLED_INFERENCER_MERGED_WITH_RAW,
        ],
        expected=[
            f"{PIPE_PATH}: step 3 (foo_postprocessing) receives inputs originated from different "
            "decoupled models: 'scores' from decoupled step 2 (foo_wrapper), 'RAW' from the "
            "ensemble request"
        ],
    ),
    Case(
        "ensemble outputs from different decoupled models",
        edits=[
            (
                "foo_postprocessing",
                "max_batch_size: 8",
                "max_batch_size: 8 model_transaction_policy { decoupled: true }",
            ),
            (
                "foo_pipeline",
                'name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }',
                'name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] },\n'
                '  { name: "pre" data_type: TYPE_FP32 dims: [ 4 ] }',
            ),
        ],
        expected=[
            f"{PIPE_PATH}: ensemble outputs originated from different decoupled models: 'LABEL' "
            "from decoupled step 3 (foo_postprocessing), 'SCORE' from decoupled step 3 "
            "(foo_postprocessing), 'pre' from the ensemble request"
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_repository_rules(tmp_path: Path, case: Case) -> None:
    check_case(tmp_path, case)
