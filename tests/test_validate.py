"""Tests of mmetools.validate: one broken config per rule, each asserting the exact messages.

Repositories are written into tmp_path from small config strings. The base repository is a valid
three-step pipeline (foo_preprocessing -> foo_inferencer -> foo_postprocessing wired by
foo_pipeline); each case applies a few text edits and lists every problem it expects, so a test
also fails when a broken config produces follow-on noise.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.errors import UsageError
from mmetools.validate import (
    Problem,
    display_path,
    summary_line,
    validate_model_folder,
    validate_path,
    validate_paths,
    validate_repository,
)

PRE = """\
name: "foo_preprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "PRE" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
INF = """\
name: "foo_inferencer"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
POST = """\
name: "foo_postprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""
STEPS = """\
  { model_name: "foo_preprocessing" model_version: -1
    input_map { key: "RAW" value: "RAW" }
    output_map { key: "PRE" value: "pre" } },
  { model_name: "foo_inferencer" model_version: -1
    input_map { key: "X" value: "pre" }
    output_map { key: "Y" value: "scores" } },
  { model_name: "foo_postprocessing" model_version: -1
    input_map { key: "SCORES" value: "scores" }
    output_map { key: "LABEL" value: "LABEL" }
    output_map { key: "SCORE" value: "SCORE" } }"""
PIPE = f"""\
name: "foo_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "RAW" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
  {{ name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }}
]
ensemble_scheduling {{ step [
{STEPS}
] }}
"""
BASE = {
    "foo_preprocessing": PRE,
    "foo_inferencer": INF,
    "foo_postprocessing": POST,
    "foo_pipeline": PIPE,
}
# A model with the inferencer's inputs and outputs; handy to wrap or to loop.
X_TO_Y = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
# An ensemble with the inferencer's inputs and outputs, calling one model.
WRAPPER = """\
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
ensemble_scheduling { step [
  { model_name: "{step}" model_version: -1
    input_map { key: "X" value: "X" } output_map { key: "Y" value: "Y" } }
] }
"""
PIPE_PATH = "repo/foo_pipeline/config.pbtxt"
PRE_PATH = "repo/foo_preprocessing/config.pbtxt"
INF_PATH = "repo/foo_inferencer/config.pbtxt"
POST_PATH = "repo/foo_postprocessing/config.pbtxt"

Edit = tuple[str, str, str]  # (model, old text, new text): replaces the first occurrence


def edited(configs: Mapping[str, str], edits: Sequence[Edit]) -> dict[str, str]:
    result = dict(configs)
    for model, old, new in edits:
        assert old in result[model], f"test edit does not apply to {model}: {old!r}"
        result[model] = result[model].replace(old, new, 1)
    return result


def write_repository(
    root: Path,
    configs: Mapping[str, str],
    versions: Mapping[str, Sequence[str]] | None = None,
    files: Sequence[str] = (),
    with_model_files: bool = True,
) -> Path:
    """Write one folder per model with its config.pbtxt and version folders (default: 1/).

    Python steps get <version>/model.py and ONNX models a <version>/model.onnx.dvc pointer,
    unless with_model_files is False; ``files`` are extra empty files (paths under root).
    """
    versions = versions or {}
    for name, text in configs.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(text, encoding="utf-8")
        for version in versions.get(name, ["1"]):
            (folder / version).mkdir(exist_ok=True)
            if with_model_files and 'backend: "python"' in text:
                (folder / version / "model.py").write_text("# step\n", encoding="utf-8")
            if with_model_files and "onnxruntime_onnx" in text:
                (folder / version / "model.onnx.dvc").write_text("outs: []\n", encoding="utf-8")
    for relative in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
    return root


def lines(problems: Sequence[Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Problems print paths relative to the current directory.
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------------------------
# Triton's rules on a plain model repository


@dataclass(frozen=True)
class Case:
    id: str
    edits: Sequence[Edit] = ()
    expected: Sequence[str] = ()
    extra: Mapping[str, str] = field(default_factory=dict)  # more models
    versions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    drop: Sequence[str] = ()  # models to leave out


def _pipe_step2(new: str) -> Edit:
    return ("foo_pipeline", 'model_name: "foo_inferencer" model_version: -1', new)


REPOSITORY_CASES = [
    Case("valid"),
    Case(
        "step without model_name",
        edits=[_pipe_step2("model_version: -1")],
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
        edits=[_pipe_step2('model_name: "foo_infer" model_version: -1')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_infer): model 'foo_infer' is not in the repository "
            "(models: foo_inferencer, foo_pipeline, foo_postprocessing, foo_preprocessing)"
        ],
    ),
    Case(
        "step version that does not exist",
        edits=[_pipe_step2('model_name: "foo_inferencer" model_version: 2')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 2 of foo_inferencer, "
            "which does not exist (versions: 1)"
        ],
    ),
    Case(
        "step version the version_policy does not load",
        edits=[_pipe_step2('model_name: "foo_inferencer" model_version: 1')],
        versions={"foo_inferencer": ["1", "2"]},
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 1 of foo_inferencer, "
            "which its version_policy does not load (loaded: 2)"
        ],
    ),
    Case(
        "explicit version that exists",
        edits=[
            _pipe_step2('model_name: "foo_inferencer" model_version: 1'),
            ("foo_inferencer", "max_batch_size: 8", "max_batch_size: 8 version_policy { all { } }"),
        ],
        versions={"foo_inferencer": ["1", "2"]},
    ),
    Case(
        "version_policy naming a missing folder",
        edits=[
            (
                "foo_inferencer",
                "max_batch_size: 8",
                "max_batch_size: 8 version_policy { specific { versions: [ 1, 3 ] } }",
            )
        ],
        expected=[
            f"{INF_PATH}: warning: version_policy lists version 3, but there is no folder "
            "foo_inferencer/3/"
        ],
    ),
    Case(
        "version_policy selecting no folder",
        edits=[
            (
                "foo_inferencer",
                "max_batch_size: 8",
                "max_batch_size: 8 version_policy { specific { versions: [ 3 ] } }",
            )
        ],
        expected=[
            f"{INF_PATH}: warning: version_policy lists version 3, but there is no folder "
            "foo_inferencer/3/",
            f"{INF_PATH}: version_policy selects none of the version folders (1); "
            "Triton finds no version to load",
        ],
    ),
    Case(
        "model without version folder",
        versions={"foo_inferencer": []},
        expected=[
            f"{INF_PATH}: no version folder (such as foo_inferencer/1/); "
            "Triton finds no version to load"
        ],
    ),
    Case(
        "ensemble without version folder",
        versions={"foo_pipeline": []},
        expected=[
            f"{PIPE_PATH}: no version folder (such as foo_pipeline/1/); "
            "Triton finds no version to load"
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
        "non-batching step in a batching ensemble",
        edits=[("foo_inferencer", "max_batch_size: 8", "max_batch_size: 0")],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
            "foo_inferencer, which expects shape [4] but 'pre' has shape [batch,4] "
            "(output 'PRE' of step 1 (foo_preprocessing))",
            f"{PIPE_PATH}: step 3 (foo_postprocessing) maps ensemble tensor 'scores' to input "
            "'SCORES' of foo_postprocessing, which expects shape [batch,2] but 'scores' has "
            "shape [2] (output 'Y' of step 2 (foo_inferencer))",
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
        "ensemble max_batch_size larger than a step's",
        edits=[("foo_inferencer", "max_batch_size: 8", "max_batch_size: 4")],
        expected=[
            f"{PIPE_PATH}: max_batch_size 8 of the ensemble is larger than max_batch_size 4 of "
            "step 2 (foo_inferencer)"
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
            f"{PIPE_PATH}: step 3 (foo_postprocessing): output_map lists model output 'LABEL' "
            "2 times ('LABEL', 'LABEL2'); protobuf keeps only the last ('LABEL2')",
            f"{PIPE_PATH}: ensemble output 'LABEL' is not written by any step "
            "(no output_map maps to 'LABEL')",
            f"{PIPE_PATH}: ensemble tensor 'LABEL2', written by step 3 (foo_postprocessing) "
            "from its output 'LABEL', is not used by any step or ensemble output",
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
            f"{PIPE_PATH}: step 2 (foo_inferencer): input_map lists model input 'X' 2 times "
            "('pre', 'RAW'); protobuf keeps only the last ('RAW')",
            f"{PIPE_PATH}: ensemble tensor 'pre', written by step 1 (foo_preprocessing) from "
            "its output 'PRE', is not used by any step or ensemble output",
            f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'RAW' to input 'X' of "
            "foo_inferencer, which expects TYPE_FP32 but 'RAW' is TYPE_STRING "
            "(ensemble input 'RAW')",
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
        "nested ensemble",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace(
                "{step}", "foo_inferencer"
            )
        },
        edits=[_pipe_step2('model_name: "foo_wrapper" model_version: -1')],
    ),
    Case(
        "ensemble containing itself",
        extra={
            "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace("{step}", "foo_wrapper")
        },
        edits=[_pipe_step2('model_name: "foo_wrapper" model_version: -1')],
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
        edits=[_pipe_step2('model_name: "foo_wrapper" model_version: -1')],
        expected=[
            "repo/foo_inner/config.pbtxt: circular dependency between ensembles: "
            "foo_inner -> foo_wrapper -> foo_inner"
        ],
    ),
    Case(
        "step merging outputs of a decoupled model with other inputs",
        edits=[
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
        ],
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
            _pipe_step2('model_name: "foo_wrapper" model_version: -1'),
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
    Case(
        "ensemble with instance_group",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                "max_batch_size: 8 instance_group [ { kind: KIND_CPU } ]",
            )
        ],
        expected=[f"{PIPE_PATH}: instance_group must not be set for an ensemble"],
    ),
    Case(
        "ensemble with optimization",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                "max_batch_size: 8 optimization { input_pinned_memory { enable: true } }",
            )
        ],
        expected=[f"{PIPE_PATH}: optimization must not be set for an ensemble"],
    ),
    Case(
        "ensemble with model_warmup",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                'max_batch_size: 8 model_warmup [ { name: "w" batch_size: 1 } ]',
            )
        ],
        expected=[f"{PIPE_PATH}: model_warmup must not be set for an ensemble"],
    ),
    Case(
        "ensemble with a backend",
        edits=[("foo_pipeline", 'platform: "ensemble"', 'platform: "ensemble" backend: "python"')],
        expected=[
            f'{PIPE_PATH}: an ensemble must not set backend (found backend: "python"); Triton '
            'requires platform: "ensemble" and no backend'
        ],
    ),
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
        "step without model_version asks for version 0",
        edits=[_pipe_step2('model_name: "foo_inferencer"')],
        expected=[
            f"{PIPE_PATH}: step 2 (foo_inferencer) asks for version 0 of foo_inferencer, which "
            "does not exist (versions: 1); an omitted model_version means 0, use "
            "model_version: -1 for the latest"
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
        "ensemble platform without ensemble_scheduling",
        edits=[("foo_pipeline", PIPE[PIPE.index("ensemble_scheduling") :], "")],
        expected=[f'{PIPE_PATH}: platform is "ensemble" but ensemble_scheduling is missing'],
    ),
    Case(
        "ensemble_scheduling on a model that is not an ensemble",
        extra={
            "foo_odd": X_TO_Y.replace("{name}", "foo_odd")
            + 'ensemble_scheduling { step [ { model_name: "foo_inferencer" model_version: -1\n'
            '  input_map { key: "X" value: "X" } output_map { key: "Y" value: "Y" } } ] }\n'
        },
        expected=[
            "repo/foo_odd/config.pbtxt: ensemble_scheduling is set but platform is not set, "
            'not "ensemble"'
        ],
    ),
    Case(
        "config name differs from folder name",
        edits=[("foo_inferencer", 'name: "foo_inferencer"', 'name: "foo_inf"')],
        expected=[
            f"{INF_PATH}: name 'foo_inf' differs from the folder name 'foo_inferencer'; Triton "
            "requires the config name to equal its folder name"
        ],
    ),
    Case(
        "config without name (Triton takes the folder name)",
        edits=[("foo_inferencer", 'name: "foo_inferencer"\n', "")],
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
        "unknown backend is a warning",
        edits=[("foo_preprocessing", 'backend: "python"', 'backend: "custom"')],
        expected=[
            f"{PRE_PATH}: warning: unknown backend 'custom'; the serving Triton must provide it"
        ],
    ),
    Case(
        "unknown platform",
        edits=[("foo_inferencer", 'platform: "onnxruntime_onnx"', 'platform: "onnx"')],
        expected=[
            f"{INF_PATH}: unknown platform 'onnx' and no backend (known platforms: ensemble, "
            "libtorch, onnxruntime_onnx, pytorch_libtorch, tensorflow_graphdef, "
            "tensorflow_savedmodel, tensorrt_plan, torch_aoti)"
        ],
    ),
    Case(
        "platform and backend that do not match",
        edits=[
            (
                "foo_inferencer",
                'platform: "onnxruntime_onnx"',
                'platform: "onnxruntime_onnx" backend: "pytorch"',
            )
        ],
        expected=[
            f"{INF_PATH}: platform 'onnxruntime_onnx' and backend 'pytorch' do not match "
            "(platform 'onnxruntime_onnx' runs on backend 'onnxruntime')"
        ],
    ),
    Case(
        "neither platform nor backend",
        edits=[("foo_inferencer", 'platform: "onnxruntime_onnx"\n', "")],
        expected=[
            f"{INF_PATH}: warning: sets neither platform nor backend; Triton then guesses the "
            "backend from the files in the first version folder: set it explicitly"
        ],
    ),
    Case(
        "negative max_batch_size",
        extra={"foo_extra": X_TO_Y.replace("{name}", "foo_extra").replace("8", "-1")},
        expected=["repo/foo_extra/config.pbtxt: max_batch_size must be >= 0, got -1"],
    ),
    Case(
        "tensor declarations Triton rejects",
        extra={"foo_extra": """\
name: "foo_extra"
backend: "python"
max_batch_size: 0
input [
  { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "B" dims: [ 1 ] },
  { name: "C" data_type: TYPE_FP32 },
  { data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "D" data_type: TYPE_FP32 dims: [ 0, 3 ] }
]
output [
  { name: "E" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } },
  { name: "F" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 5 ] } },
  { name: "G" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ -1, 2 ] } },
  { name: "H" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ -1, -1, 2 ] } },
  { name: "I" data_type: TYPE_FP32 dims: [ 2, -1, 3 ] reshape { shape: [ 2, -1, 3, 1 ] } },
  { name: "J" data_type: TYPE_FP32 dims: [ 2 ] reshape { shape: [ 0, 2 ] } }
]
"""},
        expected=[
            "repo/foo_extra/config.pbtxt: input 'A' is declared twice",
            "repo/foo_extra/config.pbtxt: input 'B' has no data_type",
            "repo/foo_extra/config.pbtxt: input 'C' has no dims",
            "repo/foo_extra/config.pbtxt: input 5 has no name",
            "repo/foo_extra/config.pbtxt: input 'D' has dims [0,3]; each dimension must be >= "
            "1, or -1 for a variable size",
            "repo/foo_extra/config.pbtxt: output 'E' has an empty reshape in a model that does "
            "not batch (max_batch_size 0); Triton does not support scalar tensors",
            "repo/foo_extra/config.pbtxt: output 'F' has dims [2,3] and reshape [5] with "
            "different element counts",
            "repo/foo_extra/config.pbtxt: output 'G' has dims [2,-1] and reshape [-1,2] with "
            "different element counts",
            "repo/foo_extra/config.pbtxt: output 'H' has dims [2,-1] and reshape [-1,-1,2] with "
            "different numbers of variable-size dimensions",
            "repo/foo_extra/config.pbtxt: output 'J' has reshape [0,2]; each dimension must be "
            ">= 1, or -1 for a variable size",
        ],
    ),
]


@pytest.mark.parametrize("case", REPOSITORY_CASES, ids=[c.id for c in REPOSITORY_CASES])
def test_repository_rules(tmp_path: Path, case: Case) -> None:
    configs = edited({**BASE, **case.extra}, case.edits)
    for name in case.drop:
        del configs[name]
    root = write_repository(tmp_path / "repo", configs, case.versions)
    assert lines(validate_repository(root)) == list(case.expected)


def test_model_folder_without_config_named_by_a_step(tmp_path: Path) -> None:
    configs = edited(BASE, [_pipe_step2('model_name: "foo_extra" model_version: -1')])
    root = write_repository(tmp_path / "repo", configs)
    (root / "foo_extra" / "1").mkdir(parents=True)
    assert lines(validate_repository(root)) == [
        f"{PIPE_PATH}: step 2 (foo_extra): model folder 'foo_extra' has no config.pbtxt"
    ]


def test_step_of_a_model_whose_config_does_not_parse_is_not_reported_twice(
    tmp_path: Path,
) -> None:
    configs = edited(BASE, [("foo_inferencer", "input [", "input [[")])
    root = write_repository(tmp_path / "repo", configs)
    problems = validate_repository(root)
    assert [p.location for p in problems] == [f"{INF_PATH}:4:8"]


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", BASE)
    (root / "foo_inferencer" / "config.pbtxt").write_bytes(b'name: "foo_\xff"\n')
    assert lines(validate_repository(root)) == [
        f"{INF_PATH}: not UTF-8 text (invalid start byte at byte 11)"
    ]


def test_problem_text_and_relative_paths(tmp_path: Path) -> None:
    problem = Problem(tmp_path / "repo" / "a" / "config.pbtxt", "bad", "warning", 3, 7)
    assert str(problem) == "repo/a/config.pbtxt:3:7: warning: bad"
    assert not problem.is_error
    outside = Path("/somewhere/else/config.pbtxt")
    assert display_path(outside) == "/somewhere/else/config.pbtxt"
    assert display_path(Path("relative/x")) == "relative/x"


# --------------------------------------------------------------------------------------------
# The project's rules on models/<name>/

FOLDER = "models/foo"


def write_model_folder(
    tmp_path: Path,
    configs: Mapping[str, str] | None = None,
    versions: Mapping[str, Sequence[str]] | None = None,
    version_text: str | None = "1\n",
    requirements: bool = True,
    with_model_files: bool = True,
) -> Path:
    """models/foo as the project lays it out; the ensemble has no 1/ (packaging adds it)."""
    folder = tmp_path / "models" / "foo"
    versions = {"foo_pipeline": [], **(versions or {})}
    write_repository(folder, configs or BASE, versions, with_model_files=with_model_files)
    if version_text is not None:
        (folder / "model_version.txt").write_text(version_text, encoding="utf-8")
    if requirements:
        (folder / "requirements.txt").write_text("numpy\n", encoding="utf-8")
    return folder


def test_valid_model_folder(tmp_path: Path) -> None:
    assert validate_model_folder(write_model_folder(tmp_path)) == []
    assert validate_path(tmp_path / "models" / "foo") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1\n", "version must be a positive integer such as 1 or 12, got 'v1'"),
        ("0\n", "version must be a positive integer such as 1 or 12, got '0'"),
        ("\n", "version must be a positive integer such as 1 or 12, got empty"),
        ("1.2", "version must be a positive integer such as 1 or 12, got '1.2'"),
    ],
)
def test_bad_model_version(tmp_path: Path, text: str, expected: str) -> None:
    folder = write_model_folder(tmp_path, version_text=text)
    assert lines(validate_path(folder)) == [f"{FOLDER}/model_version.txt: {expected}"]


def test_missing_model_version_file(tmp_path: Path) -> None:
    # Without model_version.txt a folder is a plain repository for validate_path; asked
    # explicitly, the model folder check names the missing file.
    folder = write_model_folder(tmp_path, version_text=None)
    assert lines(validate_model_folder(folder)) == [
        f"{FOLDER}/model_version.txt: missing; it must hold the model's version, e.g. 1"
    ]


def test_config_without_name(tmp_path: Path) -> None:
    configs = edited(BASE, [("foo_inferencer", 'name: "foo_inferencer"\n', "")])
    assert lines(validate_path(write_model_folder(tmp_path, configs))) == [
        f'{FOLDER}/foo_inferencer/config.pbtxt: no name; set name: "foo_inferencer"'
    ]


def test_config_name_differs_from_folder(tmp_path: Path) -> None:
    configs = edited(BASE, [("foo_postprocessing", 'name: "foo_postprocessing"', 'name: "post"')])
    assert lines(validate_path(write_model_folder(tmp_path, configs))) == [
        f"{FOLDER}/foo_postprocessing/config.pbtxt: name 'post' differs from the folder name "
        "'foo_postprocessing'; Triton requires the config name to equal its folder name"
    ]


def test_step_without_version_folder(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path, versions={"foo_preprocessing": []})
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_preprocessing/config.pbtxt: no version folder (such as "
        "foo_preprocessing/1/); Triton finds no version to load"
    ]


def test_python_step_without_model_py(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path)
    (folder / "foo_postprocessing" / "1" / "model.py").unlink()
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_postprocessing/1: no model.py; the Python backend runs "
        "foo_postprocessing/1/model.py"
    ]


def test_python_step_with_default_model_filename(tmp_path: Path) -> None:
    configs = edited(
        BASE,
        [
            (
                "foo_preprocessing",
                'backend: "python"',
                'backend: "python" default_model_filename: "step.py"',
            )
        ],
    )
    folder = write_model_folder(tmp_path, configs)
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_preprocessing/1: no step.py; the Python backend runs "
        "foo_preprocessing/1/step.py"
    ]
    (folder / "foo_preprocessing" / "1" / "step.py").write_text("", encoding="utf-8")
    assert validate_path(folder) == []


def test_inferencer_without_weights_or_pointer(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path)
    (folder / "foo_inferencer" / "1" / "model.onnx.dvc").unlink()
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_inferencer/1: neither model.onnx nor its DVC pointer model.onnx.dvc; "
        "foo_inferencer loads 1/model.onnx (run `dvc pull`, or `dvc add` the weight file)"
    ]
    (folder / "foo_inferencer" / "1" / "model.onnx").write_bytes(b"onnx")
    assert validate_path(folder) == []


def test_torchscript_inferencer_with_default_model_filename(tmp_path: Path) -> None:
    configs = edited(
        BASE,
        [
            (
                "foo_inferencer",
                'platform: "onnxruntime_onnx"',
                'platform: "pytorch_libtorch" default_model_filename: "net.pt"',
            )
        ],
    )
    folder = write_model_folder(tmp_path, configs)
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_inferencer/1: neither net.pt nor its DVC pointer net.pt.dvc; "
        "foo_inferencer loads 1/net.pt (run `dvc pull`, or `dvc add` the weight file)"
    ]
    (folder / "foo_inferencer" / "1" / "net.pt.dvc").write_text("outs: []\n", encoding="utf-8")
    assert validate_path(folder) == []


ENV = 'parameters: { key: "EXECUTION_ENV_PATH", value: { string_value: "%s" } }\n'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$$TRITON_MODEL_DIRECTORY/python_env.tar.gz", None),
        ("$$TRITON_MODEL_DIRECTORY/envs/python_env", None),
        (
            "python_env.tar.gz",
            "parameter EXECUTION_ENV_PATH 'python_env.tar.gz' must start with "
            "$$TRITON_MODEL_DIRECTORY/ (Triton does not resolve a relative path against the "
            "step folder), e.g. $$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "/opt/envs/python_env.tar.gz",
            "parameter EXECUTION_ENV_PATH '/opt/envs/python_env.tar.gz' must start with "
            "$$TRITON_MODEL_DIRECTORY/ (an absolute path does not travel with the artifact), "
            "e.g. $$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "$$TRITON_MODEL_DIRECTORY/../shared/python_env.tar.gz",
            "parameter EXECUTION_ENV_PATH '$$TRITON_MODEL_DIRECTORY/../shared/python_env.tar.gz' "
            "leaves the step folder through '..'; keep the environment inside "
            "foo_preprocessing/, e.g. $$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "$$TRITON_MODEL_DIRECTORY/",
            "parameter EXECUTION_ENV_PATH '$$TRITON_MODEL_DIRECTORY/' names no file, e.g. "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
    ],
)
def test_execution_env_path(tmp_path: Path, value: str, expected: str | None) -> None:
    configs = dict(BASE)
    configs["foo_preprocessing"] += ENV % value
    problems = lines(validate_path(write_model_folder(tmp_path, configs)))
    path = f"{FOLDER}/foo_preprocessing/config.pbtxt"
    assert problems == ([] if expected is None else [f"{path}: {expected}"])


def test_requirements_missing_with_python_steps(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path, requirements=False)
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/requirements.txt: missing; the Python steps (foo_postprocessing, "
        "foo_preprocessing) need it to build their environment (it may be empty)"
    ]


def test_requirements_not_needed_without_python_steps(tmp_path: Path) -> None:
    configs = {
        "foo_inferencer": INF,
        "foo_pipeline": PIPE.replace(STEPS, STEPS.split("},\n")[1] + "}")
        .replace(
            '"RAW" data_type: TYPE_STRING dims: [ 1 ]', '"pre" data_type: TYPE_FP32 dims: [ 4 ]'
        )
        .replace(
            'output [\n  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },\n'
            '  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }\n]',
            'output [ { name: "scores" data_type: TYPE_FP32 dims: [ 2 ] } ]',
        ),
    }
    folder = write_model_folder(tmp_path, configs, requirements=False)
    assert validate_path(folder) == []


def test_two_ensembles(tmp_path: Path) -> None:
    configs = {
        **BASE,
        "foo_wrapper": WRAPPER.replace("{name}", "foo_wrapper").replace("{step}", "foo_inferencer"),
    }
    folder = write_model_folder(tmp_path, configs, versions={"foo_wrapper": []})
    assert lines(validate_path(folder)) == [
        f"{FOLDER}: 2 ensembles (foo_pipeline, foo_wrapper); model 'foo' needs exactly one: "
        "SageMaker serves a single ensemble per artifact",
        f"{FOLDER}/foo_wrapper/config.pbtxt: warning: ensemble folder 'foo_wrapper' should be "
        "named 'foo_pipeline'",
    ]


def test_no_ensemble(tmp_path: Path) -> None:
    configs = {k: v for k, v in BASE.items() if k != "foo_pipeline"}
    folder = write_model_folder(tmp_path, configs)
    assert lines(validate_path(folder)) == [
        f'{FOLDER}: no ensemble (a model folder with platform: "ensemble") among '
        "foo_inferencer, foo_postprocessing, foo_preprocessing; model 'foo' needs exactly one, "
        "named foo_pipeline"
    ]


def test_ensemble_folder_not_named_pipeline(tmp_path: Path) -> None:
    configs = {k: v for k, v in BASE.items() if k != "foo_pipeline"}
    configs["foo_ensemble"] = PIPE.replace('name: "foo_pipeline"', 'name: "foo_ensemble"')
    folder = write_model_folder(tmp_path, configs, versions={"foo_ensemble": []})
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_ensemble/config.pbtxt: warning: ensemble folder 'foo_ensemble' should be "
        "named 'foo_pipeline'"
    ]


def test_ensemble_version_folder_is_optional_but_steps_need_one(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path, versions={"foo_pipeline": ["1"]})
    assert validate_path(folder) == []


def test_model_that_is_no_step(tmp_path: Path) -> None:
    configs = {**BASE, "foo_spare": X_TO_Y.replace("{name}", "foo_spare")}
    folder = write_model_folder(tmp_path, configs)
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_spare/config.pbtxt: warning: not a step of foo_pipeline; it would ship "
        "in the artifact and load for nothing"
    ]


def test_sagemaker_cannot_find_ensemble_text(tmp_path: Path) -> None:
    configs = edited(BASE, [("foo_pipeline", 'platform: "ensemble"', 'platform : "ensemble"')])
    assert lines(validate_path(write_model_folder(tmp_path, configs))) == [
        f"{FOLDER}/foo_pipeline/config.pbtxt: platform must be written exactly as platform: "
        '"ensemble" (double quotes, no space before the colon); SageMaker\'s multi-model '
        "frontend finds the ensemble by that text"
    ]


def test_sagemaker_would_take_a_comment_for_the_ensemble(tmp_path: Path) -> None:
    configs = dict(BASE)
    configs["foo_inferencer"] = '# copied from platform: "ensemble"\n' + INF
    assert lines(validate_path(write_model_folder(tmp_path, configs))) == [
        f'{FOLDER}/foo_inferencer/config.pbtxt: contains the text platform: "ensemble" (in a '
        "comment?) but is not an ensemble; SageMaker's multi-model frontend may serve this "
        "folder as the ensemble"
    ]


def test_unknown_backend_is_only_a_warning_in_a_model_folder(tmp_path: Path) -> None:
    configs = edited(BASE, [("foo_postprocessing", 'backend: "python"', 'backend: "fancy"')])
    folder = write_model_folder(tmp_path, configs)
    problems = validate_path(folder)
    assert lines(problems) == [
        f"{FOLDER}/foo_postprocessing/config.pbtxt: warning: unknown backend 'fancy'; the "
        "serving Triton must provide it"
    ]
    assert not any(p.is_error for p in problems)


def test_syntax_error_does_not_stop_the_other_checks(tmp_path: Path) -> None:
    configs = edited(BASE, [("foo_preprocessing", 'backend: "python"', 'backend "python"')])
    folder = write_model_folder(tmp_path, configs, version_text="one")
    (folder / "foo_inferencer" / "1" / "model.onnx.dvc").unlink()
    assert lines(validate_path(folder)) == [
        f"{FOLDER}/foo_inferencer/1: neither model.onnx nor its DVC pointer model.onnx.dvc; "
        "foo_inferencer loads 1/model.onnx (run `dvc pull`, or `dvc add` the weight file)",
        f"{FOLDER}/foo_preprocessing/config.pbtxt:2:9: invalid config.pbtxt: "
        '\'backend "python"\': Expected ":".',
        f"{FOLDER}/model_version.txt: version must be a positive integer such as 1 or 12, "
        "got 'one'",
    ]


# --------------------------------------------------------------------------------------------
# Paths and the command line


def test_folder_of_model_folders(tmp_path: Path) -> None:
    write_model_folder(tmp_path)
    other = write_model_folder(tmp_path / "second")
    (other / "model_version.txt").write_text("x", encoding="utf-8")
    shutil.move(other, tmp_path / "models" / "bar")
    assert lines(validate_path(tmp_path / "models")) == [
        "models/bar/foo_pipeline/config.pbtxt: warning: ensemble folder 'foo_pipeline' should "
        "be named 'bar_pipeline'",
        "models/bar/model_version.txt: version must be a positive integer such as 1 or 12, "
        "got 'x'",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nope", "nope: no such file or folder"),
        (
            lambda root: _touch(root / "file.txt"),
            "file.txt: not a folder; expected a model folder (with model_version.txt) or a "
            "Triton model repository",
        ),
        (
            lambda root: _mkdir(root / "empty"),
            "empty: neither a model folder (no model_version.txt) nor a Triton model repository "
            "(no subfolder with a config.pbtxt)",
        ),
        (
            lambda root: write_repository(root / "repo", BASE) / "foo_inferencer",
            "repo/foo_inferencer: this is a single Triton model; pass the repository that "
            "holds it (repo) or its model folder",
        ),
    ],
    ids=["missing", "file", "empty", "single-model"],
)
def test_unusable_paths(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = Path(make(tmp_path).relative_to(tmp_path))
    with pytest.raises(UsageError) as raised:
        validate_paths([path])
    assert str(raised.value) == message


def _touch(path: Path) -> Path:
    path.write_text("", encoding="utf-8")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_files_among_folders_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model_folder(tmp_path)
    (tmp_path / "models" / "BUILD").write_text("", encoding="utf-8")
    assert validate_paths([Path("models/foo"), Path("models/BUILD")]) == []
    assert main(["validate", "models/BUILD", "models/foo"]) == 0
    assert capsys.readouterr().out == (
        "valid: 0 errors, 0 warnings in 1 path (skipped 1 file: models/BUILD)\n"
    )


def test_cli_without_paths_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "Missing argument 'paths'" in capsys.readouterr().err


def test_summary_line() -> None:
    problems = [Problem(Path("a"), "x"), Problem(Path("a"), "y", "warning")]
    assert (
        summary_line(problems, [Path("a"), Path("b")]) == "invalid: 1 error, 1 warning in 2 paths"
    )
    assert summary_line([], [Path("a")]) == "valid: 0 errors, 0 warnings in 1 path"


def test_cli_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_model_folder(tmp_path)
    assert main(["validate", "models/foo"]) == 0
    assert capsys.readouterr().out == "valid: 0 errors, 0 warnings in 1 path\n"


def test_cli_errors_exit_1_and_print_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model_folder(tmp_path)
    configs = edited(BASE, [("foo_inferencer", "TYPE_FP32", "TYPE_INT32")])
    write_repository(tmp_path / "repo", configs)
    assert main(["validate", "models/foo", "repo"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{PIPE_PATH}: step 2 (foo_inferencer) maps ensemble tensor 'pre' to input 'X' of "
        "foo_inferencer, which expects TYPE_INT32 but 'pre' is TYPE_FP32 (output 'PRE' of "
        "step 1 (foo_preprocessing))",
        "invalid: 1 error, 0 warnings in 2 paths",
    ]


def test_cli_warnings_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = edited(BASE, [("foo_postprocessing", 'backend: "python"', 'backend: "fancy"')])
    write_model_folder(tmp_path, configs)
    assert main(["validate", "models/foo"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{FOLDER}/foo_postprocessing/config.pbtxt: warning: unknown backend 'fancy'; the "
        "serving Triton must provide it",
        "valid: 0 errors, 1 warning in 1 path",
    ]


def test_cli_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "does/not/exist"]) == 2
    assert capsys.readouterr().err == "error: does/not/exist: no such file or folder\n"


# --------------------------------------------------------------------------------------------
# The example models of the repository, and broken copies of them

EXAMPLES = ["screen_detector", "intent_classifier"]


def copy_example(tmp_path: Path, name: str) -> Path:
    target = tmp_path / "models" / name
    shutil.copytree(
        MODELS_DIR / name, target, ignore=shutil.ignore_patterns("tests", "__pycache__")
    )
    return target


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_model_is_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(MODELS_DIR.parent)
    assert lines(validate_path(Path("models") / name)) == []


def test_cli_on_all_examples(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a user types: `mmetools validate models/*` (files such as a BUILD are skipped).
    monkeypatch.chdir(MODELS_DIR.parent)
    entries = sorted(str(p.relative_to(MODELS_DIR.parent)) for p in MODELS_DIR.iterdir())
    assert main(["validate", *entries]) == 0
    output = capsys.readouterr().out.splitlines()
    assert len(output) == 1
    assert output[0].startswith(f"valid: 0 errors, 0 warnings in {len(EXAMPLES)} paths")


def test_broken_screen_detector_dtype(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "screen_detector")
    replace_in(folder / "screen_detector_inferencer" / "config.pbtxt", "TYPE_FP32", "TYPE_FP16")
    assert lines(validate_path(folder)) == [
        "models/screen_detector/screen_detector_pipeline/config.pbtxt: step 2 "
        "(screen_detector_inferencer) maps ensemble tensor 'pixels' to input 'pixels' of "
        "screen_detector_inferencer, which expects TYPE_FP16 but 'pixels' is TYPE_FP32 "
        "(output 'PIXELS' of step 1 (screen_detector_preprocessing))"
    ]


def test_broken_screen_detector_image_size(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "screen_detector")
    replace_in(folder / "screen_detector_preprocessing" / "config.pbtxt", "64, 64", "32, 32")
    assert lines(validate_path(folder)) == [
        "models/screen_detector/screen_detector_pipeline/config.pbtxt: step 2 "
        "(screen_detector_inferencer) maps ensemble tensor 'pixels' to input 'pixels' of "
        "screen_detector_inferencer, which expects shape [3,64,64] but 'pixels' has shape "
        "[3,32,32] (output 'PIXELS' of step 1 (screen_detector_preprocessing))"
    ]


def test_broken_screen_detector_missing_files(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "screen_detector")
    (folder / "screen_detector_postprocessing" / "1" / "model.py").unlink()
    for weight in (folder / "screen_detector_inferencer" / "1").glob("model.onnx*"):
        weight.unlink()
    (folder / "requirements.txt").unlink()
    assert lines(validate_path(folder)) == [
        "models/screen_detector/requirements.txt: missing; the Python steps "
        "(screen_detector_postprocessing, screen_detector_preprocessing) need it to build their "
        "environment (it may be empty)",
        "models/screen_detector/screen_detector_inferencer/1: neither model.onnx nor its DVC "
        "pointer model.onnx.dvc; screen_detector_inferencer loads 1/model.onnx (run `dvc pull`, "
        "or `dvc add` the weight file)",
        "models/screen_detector/screen_detector_postprocessing/1: no model.py; the Python "
        "backend runs screen_detector_postprocessing/1/model.py",
    ]


def test_broken_screen_detector_batch_size(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "screen_detector")
    replace_in(
        folder / "screen_detector_postprocessing" / "config.pbtxt",
        "max_batch_size: 8",
        "max_batch_size: 2",
    )
    assert lines(validate_path(folder)) == [
        "models/screen_detector/screen_detector_pipeline/config.pbtxt: max_batch_size 8 of the "
        "ensemble is larger than max_batch_size 2 of step 3 (screen_detector_postprocessing)"
    ]


def test_broken_intent_classifier_token_type(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "intent_classifier")
    replace_in(
        folder / "intent_classifier_preprocessing" / "config.pbtxt", "TYPE_INT64", "TYPE_INT32"
    )
    assert lines(validate_path(folder)) == [
        "models/intent_classifier/intent_classifier_pipeline/config.pbtxt: step 2 "
        "(intent_classifier_inferencer) maps ensemble tensor 'token_ids' to input 'INPUT__0' of "
        "intent_classifier_inferencer, which expects TYPE_INT64 but 'token_ids' is TYPE_INT32 "
        "(output 'TOKEN_IDS' of step 1 (intent_classifier_preprocessing))"
    ]


def test_broken_intent_classifier_unwired_output(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "intent_classifier")
    pipeline = folder / "intent_classifier_pipeline" / "config.pbtxt"
    replace_in(pipeline, 'value: "CONFIDENCE"', 'value: "confidence"')
    assert lines(validate_path(folder)) == [
        "models/intent_classifier/intent_classifier_pipeline/config.pbtxt: ensemble output "
        "'CONFIDENCE' is not written by any step (no output_map maps to 'CONFIDENCE')",
        "models/intent_classifier/intent_classifier_pipeline/config.pbtxt: ensemble tensor "
        "'confidence', written by step 3 (intent_classifier_postprocessing) from its output "
        "'CONFIDENCE', is not used by any step or ensemble output",
    ]


def test_broken_intent_classifier_execution_env(tmp_path: Path) -> None:
    folder = copy_example(tmp_path, "intent_classifier")
    config = folder / "intent_classifier_preprocessing" / "config.pbtxt"
    config.write_text(
        config.read_text(encoding="utf-8") + ENV % "../python_env.tar.gz", encoding="utf-8"
    )
    assert lines(validate_path(folder)) == [
        "models/intent_classifier/intent_classifier_preprocessing/config.pbtxt: parameter "
        "EXECUTION_ENV_PATH '../python_env.tar.gz' must start with $$TRITON_MODEL_DIRECTORY/ "
        "(Triton does not resolve a relative path against the step folder), e.g. "
        "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz"
    ]
