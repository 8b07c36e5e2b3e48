"""Malformed inputs through the command line, each with the exact message and exit code it gets.

Every row starts from a copy of models/screen_detector (without its packed envs and weights) in
tmp_path, which is also the current folder, breaks one thing, runs ``mmetools.cli.main`` and
compares stdout and stderr line by line. No row may print a traceback. Rows cover: config.pbtxt
syntax errors, every ensemble wiring rule of the validator (one row each), model_version.txt,
fixtures with wrong names/dtypes/shapes, requirements.txt that does not resolve (``mmetools
env``, offline: uv sees an empty find-links folder and no index), artifact names that are not
``<name>_<version>.tar.gz`` and tarballs whose members could escape the extraction folder
(refused before anything is extracted, and before any Triton server starts).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.model.cases.values import KSERVE_DTYPES

# Each row runs in well under a second; a hang (a tool waiting on the network) fails instead.
pytestmark = pytest.mark.timeout(60)

MODEL = "screen_detector"
PIPE = f"{MODEL}/{MODEL}_pipeline/config.pbtxt"
PRE = f"{MODEL}/{MODEL}_preprocessing/config.pbtxt"
INF = f"{MODEL}/{MODEL}_inferencer/config.pbtxt"
POST = f"{MODEL}/{MODEL}_postprocessing/config.pbtxt"
VERSION = f"{MODEL}/model_version.txt"
FIXTURES = f"{MODEL}/tests/fixtures"
CASE = f"{FIXTURES}/screen_photo_png.json"

# What a copy leaves out: packed envs (26 MB each) and build leftovers. The weight file is left
# out too: its DVC pointer satisfies the validator, and no row gets as far as loading it.
COPY_IGNORE = shutil.ignore_patterns(
    "python_env.tar.gz", ".python_env.json", "__pycache__", ".mypy_cache", "model.onnx"
)

Edit = tuple[str, str, str]  # (file relative to the current folder, old text, new text)
Change = Callable[[Path], None]


def edit(path: str, old: str, new: str) -> Edit:
    return (path, old, new)


@dataclass(frozen=True)
class Row:
    id: str
    argv: tuple[str, ...]
    exit_code: int
    out: tuple[str, ...] = ()  # every stdout line, exactly
    err: tuple[str, ...] = ()  # every stderr line, exactly
    edits: tuple[Edit, ...] = ()
    files: Mapping[str, str | bytes] = field(default_factory=dict)  # written as given
    change: Change | None = None


@pytest.fixture(scope="session")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    shutil.copytree(MODELS_DIR / MODEL, root / MODEL, ignore=COPY_IGNORE)
    return root / MODEL


@pytest.fixture
def workdir(tmp_path: Path, model_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the current folder, holding a fresh copy of the model."""
    shutil.copytree(model_template, tmp_path / MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def apply(row: Row, root: Path) -> None:
    for path, old, new in row.edits:
        target = root / path
        text = target.read_text(encoding="utf-8")
        assert old in text, f"row {row.id}: {path} does not contain {old!r}"
        target.write_text(text.replace(old, new, 1), encoding="utf-8")
    for path, content in row.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if row.change is not None:
        row.change(root)


def run_row(row: Row, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    apply(row, root)
    code = main(list(row.argv))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output, output
    assert (code, row.id) == (row.exit_code, row.id), output
    return captured.out, captured.err


def check(row: Row, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run the row; stdout and stderr must be exactly its lines (rich pads log lines with
    spaces to the console width: trailing spaces are not compared)."""
    out, err = run_row(row, root, capsys)
    assert [line.rstrip() for line in out.splitlines()] == list(row.out)
    assert [line.rstrip() for line in err.splitlines()] == list(row.err)


def validate(
    row_id: str,
    *lines: str,
    edits: tuple[Edit, ...] = (),
    files: Mapping[str, str | bytes] | None = None,
    change: Change | None = None,
) -> Row:
    """A `mmetools validate screen_detector` row: ``lines`` are its whole output, one problem per
    line and the summary; it exits 1 when a problem is an error."""
    exit_code = 0 if lines[-1].startswith("valid:") else 1
    return Row(row_id, ("validate", MODEL), exit_code, lines, edits=edits, files=files or {},
               change=change)  # fmt: skip


# -------------------------------------------------------------------------------------------------
# config.pbtxt syntax

SYNTAX_ROWS = [
    validate(
        "unclosed_brace",
        f'{INF}:19:18: invalid config.pbtxt: Expected "}}".',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "dynamic_batching { }", "dynamic_batching {"),),
    ),
    validate(
        "extra_brace",
        f"{INF}:19:22: invalid config.pbtxt: 'dynamic_batching {{ }} }}': Expected identifier or"
        " number, got }.",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "dynamic_batching { }", "dynamic_batching { } }"),),
    ),
    validate(
        "unknown_field",
        f'{INF}:4:1: invalid config.pbtxt: Message type "inference.ModelConfig" has no field named'
        ' "max_batch_sizes".',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "max_batch_size: 8", "max_batch_sizes: 8"),),
    ),
    validate(
        "string_for_a_number",
        f'{INF}:4:17: invalid config.pbtxt: \'max_batch_size: "8"\': Couldn\'t parse integer: "8"',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "max_batch_size: 8", 'max_batch_size: "8"'),),
    ),
    validate(
        "unknown_enum_name",
        f"{INF}:8:16: invalid config.pbtxt: '    data_type: TYPE_FLOAT32': Enum type"
        ' "inference.DataType" has no value named TYPE_FLOAT32.',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "TYPE_FP32", "TYPE_FLOAT32"),),
    ),
    validate(
        "undefined_enum_number",
        f"{POST}: invalid config.pbtxt: input 'LOGITS': data_type 99 is not a DataType value (one"
        " of TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, TYPE_INT8, TYPE_INT16,"
        " TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, TYPE_BF16)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(POST, "data_type: TYPE_FP32", "data_type: 99"),),
    ),
    validate(
        "undefined_enum_number_nested",
        f"{INF}: invalid config.pbtxt: instance_group[0]: kind 9 is not a Kind value (one of "
        "KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                INF, "dynamic_batching { }", "dynamic_batching { }\ninstance_group [ { kind: 9 } ]"
            ),
        ),
    ),
    validate(
        "field_given_twice",
        f'{INF}:5:17: invalid config.pbtxt: Message type "inference.ModelConfig" should not have'
        ' multiple "max_batch_size" fields.',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "max_batch_size: 8", "max_batch_size: 8\nmax_batch_size: 4"),),
    ),
    validate(
        "missing_quote",
        f"{INF}:7:11: invalid config.pbtxt: '    name: \"pixels': String missing ending quote:"
        " '\"pixels'",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, 'name: "pixels"', 'name: "pixels'),),
    ),
    validate(
        "not_utf8",
        f"{INF}: not UTF-8 text (invalid continuation byte at byte 40)",
        "invalid: 1 error, 0 warnings in 1 path",
        files={INF: b'name: "screen_detector_inferencer"\n# caf\xe9\n'},
    ),
    validate(
        "scheduling_oneof",
        f'{PIPE}:25:1: invalid config.pbtxt: Field "ensemble_scheduling" is specified along with'
        ' field "dynamic_batching", another member of oneof "scheduling_choice" for message type'
        ' "inference.ModelConfig". (a model sets at most one of dynamic_batching,'
        " sequence_batching and ensemble_scheduling; an ensemble schedules its steps itself)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, "max_batch_size: 8", "max_batch_size: 8\ndynamic_batching { }"),),
    ),
]

# -------------------------------------------------------------------------------------------------
# Ensemble wiring: one row per rule of validation/ensemble.py, ensemble_flow.py and the ensemble
# rules of triton_rules.py and project_rules.py

STEP2 = f'model_name: "{MODEL}_inferencer"\n      model_version: -1'
PIXELS_IN = 'input_map { key: "pixels" value: "pixels" }'
LOGITS_OUT = 'output_map { key: "logits" value: "logits" }'
PIXELS_OUT = 'output_map { key: "PIXELS" value: "pixels" }'
LOGITS_IN = 'input_map { key: "LOGITS" value: "logits" }'
PROBABILITY_OUT = 'output_map { key: "PROBABILITY" value: "PROBABILITY" }'
IMAGE_IN = 'input_map { key: "IMAGE" value: "IMAGE" }'
PROBABILITY_DECL = 'name: "PROBABILITY"\n    data_type: TYPE_FP32\n    dims: [ 1 ]'
DECOUPLED = "\nmodel_transaction_policy { decoupled: true }\n"


def _no_steps(root: Path) -> None:
    path = root / PIPE
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text[: text.index("ensemble_scheduling")] + "ensemble_scheduling { step [ ] }\n"
    )


def _second_version(root: Path) -> None:
    shutil.copytree(root / f"{MODEL}/{MODEL}_inferencer/1", root / f"{MODEL}/{MODEL}_inferencer/2")


def _append(path: str, text: str) -> Change:
    def change(root: Path) -> None:
        with (root / path).open("a", encoding="utf-8") as stream:
            stream.write(text)

    return change


def _no_scheduling(root: Path) -> None:
    path = root / PIPE
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("ensemble_scheduling")], encoding="utf-8")


def _second_ensemble(root: Path) -> None:
    source = root / f"{MODEL}/{MODEL}_pipeline"
    copy = root / f"{MODEL}/{MODEL}_pipeline_b"
    shutil.copytree(source, copy)
    config = copy / "config.pbtxt"
    config.write_text(config.read_text().replace(f'"{MODEL}_pipeline"', f'"{MODEL}_pipeline_b"'))


def _rename_ensemble(root: Path) -> None:
    source = root / f"{MODEL}/{MODEL}_pipeline"
    target = root / f"{MODEL}/{MODEL}_ensemble"
    source.rename(target)
    config = target / "config.pbtxt"
    config.write_text(config.read_text().replace(f'"{MODEL}_pipeline"', f'"{MODEL}_ensemble"'))


def _unused_model(root: Path) -> None:
    source = root / f"{MODEL}/{MODEL}_postprocessing"
    copy = root / f"{MODEL}/{MODEL}_spare"
    shutil.copytree(source, copy)
    config = copy / "config.pbtxt"
    config.write_text(config.read_text().replace(f"{MODEL}_postprocessing", f"{MODEL}_spare"))


WIRING_ROWS = [
    # ensemble.py: each step
    validate(
        "no_step",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        f"{PIPE}: ensemble_scheduling has no step; an ensemble needs at least one",
        f"{POST}: warning: not a step of screen_detector_pipeline; it would ship in the artifact"
        " and load for nothing",
        f"{PRE}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        "invalid: 1 error, 3 warnings in 1 path",
        change=_no_steps,
    ),
    validate(
        "step_without_model_name",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        f"{PIPE}: step 2 has no model_name",
        "invalid: 1 error, 1 warning in 1 path",
        edits=(edit(PIPE, f'model_name: "{MODEL}_inferencer"', ""),),
    ),
    validate(
        "step_without_input_map",
        f"{PIPE}: step 2 (screen_detector_inferencer) has no input_map",
        f"{PIPE}: step 2 (screen_detector_inferencer) leaves input 'pixels' of"
        " screen_detector_inferencer unmapped; add it to input_map",
        f"{PIPE}: ensemble tensor 'pixels', written by step 1 (screen_detector_preprocessing) from"
        " its output 'PIXELS', is not used by any step or ensemble output",
        "invalid: 3 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, PIXELS_IN, ""),),
    ),
    validate(
        "step_without_output_map",
        f"{PIPE}: step 2 (screen_detector_inferencer) has no output_map",
        f"{PIPE}: step 3 (screen_detector_postprocessing) reads ensemble tensor 'logits' for input"
        " 'LOGITS', but no step writes 'logits' and it is not an ensemble input",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, LOGITS_OUT, ""),),
    ),
    validate(
        "map_key_repeated",
        f"{PIPE}: warning: step 2 (screen_detector_inferencer): input_map lists model input"
        " 'pixels' 2 times ('pixels', 'IMAGE'); protobuf keeps only the last ('IMAGE') and Triton"
        " silently ignores the others",
        f"{PIPE}: ensemble tensor 'pixels', written by step 1 (screen_detector_preprocessing) from"
        " its output 'PIXELS', is not used by any step or ensemble output",
        f"{PIPE}: step 2 (screen_detector_inferencer) maps ensemble tensor 'IMAGE' to input"
        " 'pixels' of screen_detector_inferencer, which expects TYPE_FP32 but 'IMAGE' is"
        " TYPE_STRING (ensemble input 'IMAGE')",
        "invalid: 2 errors, 1 warning in 1 path",
        edits=(
            edit(
                PIPE,
                PIXELS_IN,
                PIXELS_IN + "\n      " + 'input_map { key: "pixels" value: "IMAGE" }',
            ),
        ),
    ),
    validate(
        "two_outputs_to_one_tensor",
        f"{PIPE}: step 3 (screen_detector_postprocessing) maps outputs 'LABEL', 'PROBABILITY' to"
        " the same ensemble tensor 'LABEL'",
        f"{PIPE}: ensemble output 'PROBABILITY' is not written by any step (no output_map maps to"
        " 'PROBABILITY')",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, PROBABILITY_OUT, 'output_map { key: "PROBABILITY" value: "LABEL" }'),),
    ),
    validate(
        "step_model_not_in_repository",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        f"{PIPE}: step 2 (screen_detector_inference): model 'screen_detector_inference' is not in"
        " the repository (models: screen_detector_inferencer, screen_detector_pipeline,"
        " screen_detector_postprocessing, screen_detector_preprocessing)",
        "invalid: 1 error, 1 warning in 1 path",
        edits=(
            edit(PIPE, f'model_name: "{MODEL}_inferencer"', f'model_name: "{MODEL}_inference"'),
        ),
    ),
    validate(
        "step_model_folder_without_config",
        f"{MODEL}/{MODEL}_extra: no config.pbtxt, and screen_detector_extra/1/model.py defines no"
        " auto_complete_config: Triton serves it with the python backend but without inputs or"
        " outputs; add screen_detector_extra/config.pbtxt",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        "invalid: 1 error, 1 warning in 1 path",
        edits=(edit(PIPE, f'model_name: "{MODEL}_inferencer"', f'model_name: "{MODEL}_extra"'),),
        files={f"{MODEL}/{MODEL}_extra/1/model.py": "# no config\n"},
    ),
    validate(
        "step_version_missing",
        f"{PIPE}: step 2 (screen_detector_inferencer) asks for version 2 of"
        " screen_detector_inferencer, which does not exist (versions: 1)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, STEP2, STEP2.replace("-1", "2")),),
    ),
    validate(
        "step_version_omitted",
        f"{PIPE}: step 2 (screen_detector_inferencer) asks for version 0 of"
        " screen_detector_inferencer, which does not exist (versions: 1); an omitted model_version"
        " means 0, use model_version: -1 for the latest",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, STEP2, f'model_name: "{MODEL}_inferencer"'),),
    ),
    validate(
        "step_version_not_loaded",
        f"{PIPE}: step 2 (screen_detector_inferencer) asks for version 1 of"
        " screen_detector_inferencer, which its version_policy does not load (loaded: 2)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, STEP2, STEP2.replace("-1", "1")),),
        change=_second_version,
    ),
    validate(
        "ensemble_batch_larger_than_step",
        f"{PIPE}: max_batch_size 8 of the ensemble is larger than max_batch_size 4 of step 2"
        " (screen_detector_inferencer)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "max_batch_size: 8", "max_batch_size: 4"),),
    ),
    validate(
        "maps_to_unknown_input",
        f"{PIPE}: step 2 (screen_detector_inferencer) maps ensemble tensor 'pixels' to input"
        " 'pixel', but screen_detector_inferencer has no such input (inputs: pixels)",
        f"{PIPE}: step 2 (screen_detector_inferencer) leaves input 'pixels' of"
        " screen_detector_inferencer unmapped; add it to input_map",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, PIXELS_IN, 'input_map { key: "pixel" value: "pixels" }'),),
    ),
    validate(
        "maps_from_unknown_output",
        f"{PIPE}: step 2 (screen_detector_inferencer) maps output 'logit' to ensemble tensor"
        " 'logits', but screen_detector_inferencer has no such output (outputs: logits)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, LOGITS_OUT, 'output_map { key: "logit" value: "logits" }'),),
    ),
    validate(
        "input_left_unmapped",
        f"{PIPE}: step 3 (screen_detector_postprocessing) leaves input 'SCALE' of"
        " screen_detector_postprocessing unmapped; add it to input_map",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                POST,
                "input [\n",
                'input [\n  { name: "SCALE" data_type: TYPE_FP32 dims: [ 1 ] },\n',
            ),
        ),
    ),
    validate(
        "ensemble_contains_itself",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        f"{PIPE}: step 2 (screen_detector_pipeline) maps ensemble tensor 'pixels' to input"
        " 'pixels', but screen_detector_pipeline has no such input (inputs: IMAGE)",
        f"{PIPE}: step 2 (screen_detector_pipeline) maps output 'logits' to ensemble tensor"
        " 'logits', but screen_detector_pipeline has no such output (outputs: LABEL, PROBABILITY)",
        f"{PIPE}: step 2 (screen_detector_pipeline) leaves input 'IMAGE' of"
        " screen_detector_pipeline unmapped; add it to input_map",
        f"{PIPE}: circular dependency between ensembles: screen_detector_pipeline ->"
        " screen_detector_pipeline",
        "invalid: 4 errors, 1 warning in 1 path",
        edits=(edit(PIPE, f'model_name: "{MODEL}_inferencer"', f'model_name: "{MODEL}_pipeline"'),),
    ),
    # ensemble_flow.py: the data flow
    validate(
        "step_writes_an_ensemble_input",
        f"{PIPE}: step 1 (screen_detector_preprocessing) writes ensemble tensor 'IMAGE', which is"
        " an ensemble input; a tensor can have only one producer",
        f"{PIPE}: step 2 (screen_detector_inferencer) reads ensemble tensor 'pixels' for input"
        " 'pixels', but no step writes 'pixels' and it is not an ensemble input",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, PIXELS_OUT, 'output_map { key: "PIXELS" value: "IMAGE" }'),),
    ),
    validate(
        "tensor_written_by_two_steps",
        f"{PIPE}: ensemble tensor 'pixels' is written by both step 1"
        " (screen_detector_preprocessing) and step 2 (screen_detector_inferencer); a tensor can"
        " appear in only one output_map",
        f"{PIPE}: step 3 (screen_detector_postprocessing) reads ensemble tensor 'logits' for input"
        " 'LOGITS', but no step writes 'logits' and it is not an ensemble input",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, LOGITS_OUT, 'output_map { key: "logits" value: "pixels" }'),),
    ),
    validate(
        "ensemble_input_unused",
        f"{PIPE}: ensemble input 'EXTRA' is not used by any step",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                PIPE,
                "input [\n",
                'input [\n  { name: "EXTRA" data_type: TYPE_FP32 dims: [ 1 ] },\n',
            ),
        ),
    ),
    validate(
        "ensemble_output_not_written",
        f"{PIPE}: ensemble output 'EXTRA' is not written by any step (no output_map maps to"
        " 'EXTRA')",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                PIPE,
                "output [\n",
                'output [\n  { name: "EXTRA" data_type: TYPE_FP32 dims: [ 1 ] },\n',
            ),
        ),
    ),
    validate(
        "step_reads_unwritten_tensor",
        f"{PIPE}: step 3 (screen_detector_postprocessing) reads ensemble tensor 'scores' for input"
        " 'LOGITS', but no step writes 'scores' and it is not an ensemble input",
        f"{PIPE}: ensemble tensor 'logits', written by step 2 (screen_detector_inferencer) from its"
        " output 'logits', is not used by any step or ensemble output",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, LOGITS_IN, 'input_map { key: "LOGITS" value: "scores" }'),),
    ),
    validate(
        "tensor_written_but_unused",
        f"{PIPE}: ensemble output 'PROBABILITY' is not written by any step (no output_map maps to"
        " 'PROBABILITY')",
        f"{PIPE}: ensemble tensor 'prob', written by step 3 (screen_detector_postprocessing) from"
        " its output 'PROBABILITY', is not used by any step or ensemble output",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, PROBABILITY_OUT, 'output_map { key: "PROBABILITY" value: "prob" }'),),
    ),
    validate(
        "step_input_dtype_mismatch",
        f"{PIPE}: step 2 (screen_detector_inferencer) maps ensemble tensor 'pixels' to input"
        " 'pixels' of screen_detector_inferencer, which expects TYPE_FP16 but 'pixels' is"
        " TYPE_FP32 (output 'PIXELS' of step 1 (screen_detector_preprocessing))",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "TYPE_FP32", "TYPE_FP16"),),
    ),
    validate(
        "step_input_shape_mismatch",
        f"{PIPE}: step 2 (screen_detector_inferencer) maps ensemble tensor 'pixels' to input"
        " 'pixels' of screen_detector_inferencer, which expects shape [3,32,32] but 'pixels' has"
        " shape [3,64,64] (output 'PIXELS' of step 1 (screen_detector_preprocessing))",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(INF, "dims: [ 3, 64, 64 ]", "dims: [ 3, 32, 32 ]"),),
    ),
    validate(
        "ensemble_output_dtype_mismatch",
        f"{PIPE}: step 3 (screen_detector_postprocessing) maps output 'PROBABILITY' of"
        " screen_detector_postprocessing to ensemble output 'PROBABILITY', which the ensemble"
        " declares as TYPE_FP64 but screen_detector_postprocessing produces TYPE_FP32",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, PROBABILITY_DECL, PROBABILITY_DECL.replace("FP32", "FP64")),),
    ),
    validate(
        "ensemble_output_shape_mismatch",
        f"{PIPE}: step 3 (screen_detector_postprocessing) maps output 'PROBABILITY' of"
        " screen_detector_postprocessing to ensemble output 'PROBABILITY', which the ensemble"
        " declares as shape [2] but screen_detector_postprocessing produces shape [1]",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, PROBABILITY_DECL, PROBABILITY_DECL.replace("[ 1 ]", "[ 2 ]")),),
    ),
    validate(
        "steps_form_a_cycle",
        f"{PIPE}: ensemble input 'IMAGE' is not used by any step",
        f"{PIPE}: steps form a cycle, so none of them can run: step 1"
        " (screen_detector_preprocessing) -> step 2 (screen_detector_inferencer) -> step 3"
        " (screen_detector_postprocessing) -> step 1 (screen_detector_preprocessing)",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, IMAGE_IN, 'input_map { key: "IMAGE" value: "LABEL" }'),),
    ),
    validate(
        "step_inputs_from_different_decoupled_models",
        f"{PIPE}: step 3 (screen_detector_postprocessing) receives inputs originated from different"
        " decoupled models: 'logits' from decoupled step 2 (screen_detector_inferencer), 'IMAGE'"
        " from the ensemble request",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                POST,
                "input [\n",
                'input [\n  { name: "RAW" data_type: TYPE_STRING dims: [ 1 ] },\n',
            ),
            edit(PIPE, LOGITS_IN, LOGITS_IN + '\n      input_map { key: "RAW" value: "IMAGE" }'),
        ),
        change=_append(INF, DECOUPLED),
    ),
    validate(
        "ensemble_outputs_from_different_decoupled_models",
        f"{PIPE}: ensemble outputs originated from different decoupled models: 'pixels' from the"
        " ensemble request, 'LABEL' from decoupled step 3 (screen_detector_postprocessing),"
        " 'PROBABILITY' from decoupled step 3 (screen_detector_postprocessing)",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                PIPE,
                "output [\n",
                'output [\n  { name: "pixels" data_type: TYPE_FP32 dims: [ 3, 64, 64 ] },\n',
            ),
        ),
        change=_append(POST, DECOUPLED),
    ),
    # triton_rules.py: what an ensemble must (not) set
    validate(
        "ensemble_with_backend",
        f'{PIPE}: an ensemble must not set backend (found backend: "python"); Triton requires'
        ' platform: "ensemble" and no backend',
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, 'platform: "ensemble"', 'platform: "ensemble"\nbackend: "python"'),),
    ),
    validate(
        "ensemble_without_scheduling",
        f"{INF}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        f'{PIPE}: platform is "ensemble" but ensemble_scheduling is missing',
        f"{POST}: warning: not a step of screen_detector_pipeline; it would ship in the artifact"
        " and load for nothing",
        f"{PRE}: warning: not a step of screen_detector_pipeline; it would ship in the artifact and"
        " load for nothing",
        "invalid: 1 error, 3 warnings in 1 path",
        change=_no_scheduling,
    ),
    validate(
        "scheduling_on_a_step",
        f"{INF}: ensemble_scheduling is set but platform is 'onnxruntime_onnx', not \"ensemble\"",
        f"{INF}: ensemble_scheduling has no step; an ensemble needs at least one",
        "invalid: 2 errors, 0 warnings in 1 path",
        edits=(edit(INF, "dynamic_batching { }", "ensemble_scheduling { step [ ] }"),),
    ),
    validate(
        "ensemble_with_instance_group",
        f"{PIPE}: instance_group must not be set for an ensemble",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(
            edit(
                PIPE,
                "max_batch_size: 8",
                "max_batch_size: 8\ninstance_group [ { kind: KIND_CPU } ]",
            ),
        ),
    ),
    # project_rules.py: one ensemble per model folder, named <name>_pipeline, found by SageMaker
    validate(
        "no_ensemble",
        'screen_detector: no ensemble (a model folder with platform: "ensemble") among'
        " screen_detector_inferencer, screen_detector_pipeline, screen_detector_postprocessing,"
        " screen_detector_preprocessing; model 'screen_detector' needs exactly one, named"
        " screen_detector_pipeline",
        f"{PIPE}: ensemble_scheduling is set but platform is 'onnxruntime_onnx', not \"ensemble\"",
        f"{PIPE}: no version folder (such as screen_detector_pipeline/1/); Triton finds no version"
        " to load",
        "invalid: 3 errors, 0 warnings in 1 path",
        edits=(edit(PIPE, 'platform: "ensemble"', 'platform: "onnxruntime_onnx"'),),
    ),
    validate(
        "two_ensembles",
        "screen_detector: 2 ensembles (screen_detector_pipeline, screen_detector_pipeline_b); model"
        " 'screen_detector' needs exactly one: SageMaker serves a single ensemble per artifact",
        "screen_detector/screen_detector_pipeline_b/config.pbtxt: warning: ensemble folder"
        " 'screen_detector_pipeline_b' should be named 'screen_detector_pipeline'",
        "invalid: 1 error, 1 warning in 1 path",
        change=_second_ensemble,
    ),
    validate(
        "ensemble_platform_spaced",
        f'{PIPE}: platform must be written exactly as platform: "ensemble" (double quotes, no space'
        " before the colon); SageMaker's multi-model frontend finds the ensemble by that text",
        "invalid: 1 error, 0 warnings in 1 path",
        edits=(edit(PIPE, 'platform: "ensemble"', 'platform : "ensemble"'),),
    ),
    validate(
        "ensemble_misnamed",
        "screen_detector/screen_detector_ensemble/config.pbtxt: warning: ensemble folder"
        " 'screen_detector_ensemble' should be named 'screen_detector_pipeline'",
        "valid: 0 errors, 1 warning in 1 path",
        change=_rename_ensemble,
    ),
    validate(
        "model_that_is_no_step",
        "screen_detector/screen_detector_spare/config.pbtxt: warning: not a step of"
        " screen_detector_pipeline; it would ship in the artifact and load for nothing",
        "valid: 0 errors, 1 warning in 1 path",
        change=_unused_model,
    ),
]


# -------------------------------------------------------------------------------------------------
# A broken config through the other commands that read it

UNCLOSED = edit(INF, "dynamic_batching { }", "dynamic_batching {")
UNCLOSED_MESSAGE = f'{INF}:19:18: invalid config.pbtxt: Expected "}}".'
DATA_TYPE_99 = edit(POST, "data_type: TYPE_FP32", "data_type: 99")
DATA_TYPE_99_MESSAGE = (
    f"{POST}: invalid config.pbtxt: input 'LOGITS': data_type 99 is not a DataType value (one of "
    "TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, TYPE_INT8, TYPE_INT16, "
    "TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, TYPE_BF16)"
)
NOT_TESTED = "0 of 1 model(s) passed; Triton server start: none"

OTHER_COMMAND_ROWS = [
    Row("test", ("test", MODEL), 1, edits=(UNCLOSED,),
        out=(f"{MODEL} ({MODEL}): FAIL", f"  {UNCLOSED_MESSAGE}", NOT_TESTED)),
    Row("package", ("package", MODEL, "--out", "dist"), 1, edits=(UNCLOSED,),
        err=(f"INFO     {MODEL}: validating", UNCLOSED_MESSAGE)),
    Row("env", ("env", MODEL), 1, edits=(UNCLOSED,), err=(f"error: {UNCLOSED_MESSAGE}",)),
    Row("fixtures_check", ("fixtures", "check", MODEL), 1, edits=(UNCLOSED,),
        err=(f"error: {MODEL}: cannot check fixtures of model '{MODEL}': {UNCLOSED_MESSAGE}",)),
    Row("test_data_type_99", ("test", MODEL), 1, edits=(DATA_TYPE_99,),
        out=(f"{MODEL} ({MODEL}): FAIL", f"  {DATA_TYPE_99_MESSAGE}", NOT_TESTED)),
    Row("env_data_type_99", ("env", MODEL), 1, edits=(DATA_TYPE_99,),
        err=(f"error: {DATA_TYPE_99_MESSAGE}",)),
    Row("fixtures_check_data_type_99", ("fixtures", "check", MODEL), 1, edits=(DATA_TYPE_99,),
        err=(f"error: {MODEL}: cannot check fixtures of model '{MODEL}': {DATA_TYPE_99_MESSAGE}",)),
    Row("fixtures_regen_data_type_99", ("fixtures", "regen", MODEL), 1, edits=(DATA_TYPE_99,),
        err=(f"error: {MODEL}: cannot regenerate fixtures of '{MODEL}': {DATA_TYPE_99_MESSAGE}",)),
]  # fmt: skip

# -------------------------------------------------------------------------------------------------
# model_version.txt: `validate` reports it with the other problems, `package` stops on it

VERSION_ROWS = [
    row
    for name, text, shown in (
        ("zero", "0\n", "'0'"),
        ("decimal", "1.2\n", "'1.2'"),
        ("empty", "", "empty"),
        ("prefixed", "v3\n", "'v3'"),
    )
    for message in [f"{VERSION}: version must be a positive integer such as 1 or 12, got {shown}"]
    for row in (
        Row(f"validate_{name}", ("validate", MODEL), 1, files={VERSION: text},
            out=(message, "invalid: 1 error, 0 warnings in 1 path")),
        Row(f"package_{name}", ("package", MODEL, "--out", "dist"), 1, files={VERSION: text},
            err=(f"error: {message}",)),
    )
]  # fmt: skip

# -------------------------------------------------------------------------------------------------
# Fixtures: `fixtures check` stops on the first bad file; `test` reports it as the model's failure

Document = dict[str, Any]


def _fixture(change: Callable[[Document], object]) -> Change:
    def apply_change(root: Path) -> None:
        path = root / CASE
        document = json.loads(path.read_text(encoding="utf-8"))
        change(document)
        path.write_text(json.dumps(document), encoding="utf-8")

    return apply_change


def fixture_row(row_id: str, message: str, change: Callable[[Document], object]) -> Row:
    """``message``: what follows "<fixture file>: model 'screen_detector': "."""
    where = f"{CASE}: model '{MODEL}'"
    return Row(row_id, ("fixtures", "check", MODEL), 1, err=(f"error: {where}: {message}",),
               change=_fixture(change))  # fmt: skip


SIGNATURE = f"ensemble '{MODEL}_pipeline'"
DIMS = "dims [batch, 1] (batch dimension first, max_batch_size 8)"

FIXTURE_ROWS = [
    fixture_row(
        "unknown_input",
        f"inputs 'IMAGES' are not inputs of {SIGNATURE} (its inputs: 'IMAGE')",
        lambda d: d.update(inputs={"IMAGES": d["inputs"]["IMAGE"]}),
    ),
    fixture_row(
        "missing_input",
        f"{SIGNATURE} input 'IMAGE' missing from 'inputs'",
        lambda d: d.update(inputs={}),
    ),
    fixture_row(
        "unknown_output",
        f"expected outputs 'LABELS' are not produced by {SIGNATURE} "
        "(its outputs: 'LABEL', 'PROBABILITY')",
        lambda d: d["expected"].update(LABELS=d["expected"].pop("LABEL")),
    ),
    fixture_row(
        "no_expected_output",
        "'expected' is empty; list at least one output",
        lambda d: d.update(expected={}),
    ),
    fixture_row(
        "input_dtype",
        f"inputs.IMAGE.datatype is FP32 but {SIGNATURE} declares BYTES (TYPE_STRING)",
        lambda d: d["inputs"]["IMAGE"].update(datatype="FP32"),
    ),
    fixture_row(
        "output_dtype",
        f"expected.PROBABILITY.datatype is FP64 but {SIGNATURE} declares FP32 (TYPE_FP32)",
        lambda d: d["expected"]["PROBABILITY"].update(datatype="FP64"),
    ),
    fixture_row(
        "unknown_dtype",
        "expected.PROBABILITY.datatype 'FLOAT' is not one of BOOL, UINT8, UINT16, UINT32, "
        "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES",
        lambda d: d["expected"]["PROBABILITY"].update(datatype="FLOAT"),
    ),
    fixture_row(
        "input_shape",
        f"inputs.IMAGE.shape [1, 2] does not match {DIMS}",
        lambda d: d["inputs"]["IMAGE"].update(shape=[1, 2]),
    ),
    fixture_row(
        "input_shape_without_batch",
        f"inputs.IMAGE.shape [1] does not match {DIMS}",
        lambda d: d["inputs"]["IMAGE"].update(shape=[1]),
    ),
    fixture_row(
        "output_shape",
        f"expected.PROBABILITY.shape [1, 2] does not match {DIMS}",
        lambda d: d["expected"]["PROBABILITY"].update(shape=[1, 2]),
    ),
    fixture_row(
        "batch_too_large",
        "inputs.IMAGE.shape [9, 1]: batch size 9 must be between 1 and max_batch_size 8",
        lambda d: d["inputs"]["IMAGE"].update(shape=[9, 1]),
    ),
    fixture_row(
        "negative_shape",
        "inputs.IMAGE.shape must be a list of non-negative integers, got [1, -1]",
        lambda d: d["inputs"]["IMAGE"].update(shape=[1, -1]),
    ),
    fixture_row(
        "data_count",
        "expected.LABEL.data has 2 values but shape [1, 1] needs 1",
        lambda d: d["expected"]["LABEL"].update(data=["screen", "screen"]),
    ),
    fixture_row(
        "data_value",
        'expected.PROBABILITY.data[0] = "high" is not a FP32 value',
        lambda d: d["expected"]["PROBABILITY"].update(data=["high"]),
    ),
    fixture_row(
        "files_count",
        "inputs.IMAGE.files has 0 entries but shape [1, 1] needs 1",
        lambda d: d["inputs"]["IMAGE"].update(files=[]),
    ),
    fixture_row(
        "file_missing",
        f"inputs.IMAGE.files[0]: cannot read {FIXTURES}/nope.png: No such file or directory",
        lambda d: d["inputs"]["IMAGE"].update(files=["nope.png"]),
    ),
    fixture_row(
        "tolerance_on_bytes",
        "expected.LABEL.atol: tolerances apply to float outputs only; BYTES compares exactly",
        lambda d: d["expected"]["LABEL"].update(atol=0.1),
    ),
    fixture_row(
        "unknown_key",
        "fixture: unknown key 'expect' (allowed: description, inputs, expected)",
        lambda d: d.update(expect=d.pop("expected")),
    ),
    Row("invalid_json", ("fixtures", "check", MODEL), 1, files={CASE: '{"inputs": {'},
        err=(f"error: {CASE}:1:13: invalid JSON: Expecting property name enclosed in double "
             "quotes",)),
    Row("not_an_object", ("fixtures", "check", MODEL), 1, files={CASE: "[1, 2]"},
        err=(f"error: {CASE}: a fixture must be a JSON object, got a list",)),
    Row("through_test", ("test", MODEL), 1,
        change=_fixture(lambda d: d["inputs"]["IMAGE"].update(shape=[1, 2])),
        out=(f"{MODEL} ({MODEL}): FAIL",
             f"  {CASE}: model '{MODEL}': inputs.IMAGE.shape [1, 2] does not match {DIMS}",
             NOT_TESTED)),
]  # fmt: skip

# -------------------------------------------------------------------------------------------------
# requirements.txt (`mmetools env` builds the env with uv, offline here)

REQUIREMENTS = f"{MODEL}/requirements.txt"
BUILD_FAILED = f"error: model '{MODEL}': building the venv env from {REQUIREMENTS} failed:"


@dataclass(frozen=True)
class RequirementsRow:
    id: str
    text: str | None  # None: no requirements.txt
    error: str  # the line mmetools prints
    # When the installer ran: what a later line of its own output holds. uv installs when it is
    # on PATH, pip otherwise; their wording and exit codes are theirs, so only this is pinned.
    installer_says: str = ""


INSTALL_FAILED = f"{BUILD_FAILED} installing {REQUIREMENTS} failed with exit code"

REQUIREMENTS_ROWS = [
    RequirementsRow(
        "package_not_found",
        "mmetools-no-such-package==1.0\n",
        INSTALL_FAILED,
        "mmetools-no-such-package",
    ),
    RequirementsRow("malformed_requirement", "numpy>=>1\n", INSTALL_FAILED, "numpy>=>1"),
    RequirementsRow(
        "included_file",
        "numpy\n-r more.txt\n",
        f"error: {REQUIREMENTS}:2: '-r more.txt' is not supported in a model's requirements: "
        "list the packages themselves (included files and editable installs cannot be cached "
        "or packed)",
    ),
    RequirementsRow(
        "missing",
        None,
        f"error: {REQUIREMENTS}: missing; model '{MODEL}' has Python steps and their env is built "
        "from this file (list at least numpy, which Triton's python backend imports)",
    ),
]

# -------------------------------------------------------------------------------------------------
# Artifact names: `test --artifact` and `publish` refuse them before reading anything

BAD_NAMES = (
    "screen_detector.tar.gz",
    "screen_detector_0.tar.gz",
    "screen_detector_v3.tar.gz",
    "screen_detector_1.2.tar.gz",
    "screen-detector-x_1.tar.gz",  # one '-' at most: <family>-<tenant>
    "Screen_detector_1.tar.gz",
    "screen_detector_1.tgz",
    "screen_detector_1.tar.gz.sha256",
)
NAME_ROWS = [
    *(
        Row(f"test_{name}", ("test", "--artifact", f"dist/{name}"), 2,
            err=(f"error: dist/{name}: not an artifact name: expected <name>_<version>.tar.gz "
                 "with a lowercase name (letters, digits, _) and a positive integer version, "
                 "e.g. screen_detector_3.tar.gz",))
        for name in BAD_NAMES
    ),
    *(
        Row(f"publish_{name}", ("publish", f"dist/{name}", "--branch", "main"), 2,
            err=(f"error: dist/{name}: not an artifact name: expected <name>_<version>.tar.gz "
                 "with a lowercase name (letters, digits, _) and a positive integer version, "
                 "e.g. screen_detector_3.tar.gz",))
        for name in BAD_NAMES
    ),
]  # fmt: skip

# -------------------------------------------------------------------------------------------------
# Tarballs whose members could escape the extraction folder, given to `test --artifact`

ARTIFACT = f"dist/{MODEL}_1.tar.gz"


@dataclass(frozen=True)
class Member:
    name: str  # "{root}" becomes the test's folder (an absolute path)
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    size: int = 1  # of a file: that many zero bytes


@dataclass(frozen=True)
class TarballRow:
    id: str
    members: tuple[Member, ...]
    message: str  # after "dist/screen_detector_1.tar.gz: "; "{root}" as in Member


SAFE = (
    Member(f"{MODEL}_pipeline", tarfile.DIRTYPE),
    Member(f"{MODEL}_pipeline/config.pbtxt"),
    Member(f"{MODEL}_pipeline/1", tarfile.DIRTYPE),
)
TARBALL_ROWS = [
    # Found by tests/unit/model/test_fuzz.py: a file named '.' was extracted over the folder itself.
    TarballRow(
        "file_named_dot",
        (Member("."),),
        "refusing to unpack: unsafe member '.': a file whose name ends like a folder's ('/' or "
        "'/.')",
    ),
    TarballRow(
        "file_named_like_a_folder",
        (*SAFE, Member("extra/.")),
        "refusing to unpack: unsafe member 'extra/.': a file whose name ends like a folder's ('/' "
        "or '/.')",
    ),
    TarballRow(
        "parent_folder",
        (*SAFE, Member("../escaped.txt")),
        "refusing to unpack: unsafe member '../escaped.txt': path leaves the extraction "
        "folder (..)",
    ),
    TarballRow(
        "parent_folder_inside_a_path",
        (*SAFE, Member(f"{MODEL}_pipeline/../../escaped.txt")),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline/../../escaped.txt': path leaves "
        "the extraction folder (..)",
    ),
    TarballRow(
        "absolute_path",
        (*SAFE, Member("{root}/absolute.txt")),
        "refusing to unpack: unsafe member '{root}/absolute.txt': absolute path",
    ),
    TarballRow(
        "symlink",
        (*SAFE, Member(f"{MODEL}_pipeline/1/model.py", tarfile.SYMTYPE, "../../../outside.py")),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline/1/model.py': symbolic link to "
        "../../../outside.py",
    ),
    TarballRow(
        "hard_link",
        (*SAFE, Member(f"{MODEL}_pipeline/1/model.py", tarfile.LNKTYPE, SAFE[1].name)),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline/1/model.py': hard link to "
        f"{MODEL}_pipeline/config.pbtxt",
    ),
    TarballRow(
        "device",
        (*SAFE, Member("null", tarfile.CHRTYPE)),
        "refusing to unpack: unsafe member 'null': device or pipe",
    ),
    TarballRow(
        "every_offender_named",
        (Member("../a.txt"), *SAFE, Member("{root}/b.txt"), Member("c", tarfile.SYMTYPE, "/")),
        "refusing to unpack: unsafe members '../a.txt': path leaves the extraction folder (..); "
        "'{root}/b.txt': absolute path; 'c': symbolic link to /",
    ),
    TarballRow("empty", (), "the tarball is empty"),
    # Issue 11: these crashed `test --artifact` (ValueError, IsADirectoryError) or filled the disk.
    TarballRow(
        "nul_in_name",
        (*SAFE, Member(f"{MODEL}_pipeline/1/a\x00b.py")),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline/1/a\\x00b.py': name is empty or "
        "holds control characters (NUL, newline, ...)",
    ),
    TarballRow(
        "file_over_a_folder",
        (*SAFE, Member(f"{MODEL}_pipeline/1")),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline/1': given twice",
    ),
    TarballRow(
        "file_where_a_folder_is_needed",
        (Member(f"{MODEL}_pipeline"), Member(f"{MODEL}_pipeline/config.pbtxt")),
        f"refusing to unpack: unsafe member '{MODEL}_pipeline': a file, but "
        f"'{MODEL}_pipeline/config.pbtxt' needs it to be a folder",
    ),
    TarballRow(
        "expands_beyond_the_cap",  # mmetools.toml of these rows caps unpacking at 8 MiB
        (*SAFE, Member(f"{MODEL}_pipeline/1/zeros.bin", size=9 * 1024 * 1024)),
        "refusing to unpack: it expands to 9 MiB, more than the 8 MiB allowed ([triton] "
        "max_unpacked_mb in mmetools.toml)",
    ),
]  # fmt: skip


def write_tarball(path: Path, members: tuple[Member, ...], root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            name = member.name.format(root=root)
            info = tarfile.TarInfo(name)
            if "\x00" in name:  # only a PAX header can carry a NUL in a name
                info.pax_headers = {"path": name}
            info.type = member.kind
            info.linkname = member.link
            data = b"\0" * member.size if member.kind == tarfile.REGTYPE else None
            info.size = len(data) if data else 0
            tar.addfile(info, io.BytesIO(data) if data else None)


def tree(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


# -------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("row", SYNTAX_ROWS, ids=lambda row: row.id)
def test_config_syntax_errors(row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(row, workdir, capsys)


@pytest.mark.parametrize("row", WIRING_ROWS, ids=lambda row: row.id)
def test_ensemble_wiring_errors(
    row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(row, workdir, capsys)


@pytest.mark.parametrize("row", OTHER_COMMAND_ROWS, ids=lambda row: row.id)
def test_broken_config_through_other_commands(
    row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(row, workdir, capsys)


@pytest.mark.parametrize("row", VERSION_ROWS, ids=lambda row: row.id)
def test_bad_model_version(row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(row, workdir, capsys)
    assert not (workdir / "dist").exists()


@pytest.mark.parametrize("row", FIXTURE_ROWS, ids=lambda row: row.id)
def test_bad_fixtures(row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(row, workdir, capsys)


@pytest.mark.parametrize("row", REQUIREMENTS_ROWS, ids=lambda row: row.id)
def test_requirements_that_do_not_resolve(
    row: RequirementsRow,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Offline and with an empty package folder: uv or pip resolves against nothing (no network).
    links = workdir / "no-packages"
    links.mkdir()
    for variable, value in (("UV_OFFLINE", "1"), ("UV_NO_INDEX", "1"), ("UV_FIND_LINKS", links),
                            ("PIP_NO_INDEX", "1"), ("PIP_FIND_LINKS", links),
                            ("MMETOOLS_ENV_BACKEND", "venv"),
                            ("MMETOOLS_CACHE_DIR", workdir / "cache")):  # fmt: skip
        monkeypatch.setenv(variable, str(value))
    requirements = workdir / REQUIREMENTS
    # These rows are about resolving requirements.txt: no lock (a stale lock is its own row).
    for lock in requirements.parent.glob("requirements-*.lock"):
        lock.unlink()
    if row.text is None:
        requirements.unlink()
    else:
        requirements.write_text(row.text, encoding="utf-8")
    code = main(["env", MODEL])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert code == 1
    lines = [line.rstrip() for line in captured.err.splitlines()]
    errors = [index for index, line in enumerate(lines) if line.startswith("error: ")]
    assert errors, captured.err
    first = lines[errors[0]]
    if row.installer_says:
        assert re.fullmatch(re.escape(row.error) + r" [0-9]+:", first), captured.err
        assert any(row.installer_says in line for line in lines[errors[0] + 1 :]), captured.err
    else:
        assert lines[errors[0] :] == [row.error]
    # Nothing half-built is left: no cache entry, no env in any step.
    assert [p.name for p in (workdir / "cache" / "envs").glob("*")] == []
    assert list(workdir.glob(f"{MODEL}/*/python_env.tar.gz")) == []


@pytest.mark.parametrize("row", NAME_ROWS, ids=lambda row: row.id)
def test_bad_artifact_names(row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(row, workdir, capsys)


@pytest.mark.parametrize("row", TARBALL_ROWS, ids=lambda row: row.id)
def test_unsafe_tarball_is_refused_before_extraction(
    row: TarballRow,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temporary = workdir / "tmp"  # where a server's work folder (and the extraction) would go
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    write_tarball(workdir / ARTIFACT, row.members, workdir)
    (workdir / "mmetools.toml").write_text("[triton]\nmax_unpacked_mb = 8\n", encoding="utf-8")
    before = tree(workdir)
    message = f"{ARTIFACT}: {row.message.format(root=workdir)}"
    check(
        Row(
            row.id,
            ("test", "--artifact", ARTIFACT, "--fixtures", FIXTURES),
            1,
            out=(f"{MODEL} ({ARTIFACT}): FAIL", f"  {message}", NOT_TESTED),
        ),
        workdir,
        capsys,
    )
    assert tree(workdir) == before  # nothing extracted anywhere, no server work folder


def test_tarball_that_is_no_gzip_or_missing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "dist").mkdir()
    (workdir / ARTIFACT).write_bytes(b"not a tarball")
    missing = f"dist/{MODEL}_2.tar.gz"
    check(
        Row(
            "not_gzip",
            ("test", "--artifact", ARTIFACT, "--artifact", missing, "--fixtures", FIXTURES),
            1,
            out=(
                f"{MODEL} ({ARTIFACT}): FAIL",
                f"  {ARTIFACT}: not a readable .tar.gz: not a gzip file",
                f"{MODEL} ({missing}): FAIL",
                f"  {missing}: no such file",
                "0 of 2 model(s) passed; Triton server start: none",
            ),
        ),
        workdir,
        capsys,
    )


# -------------------------------------------------------------------------------------------------
# Inputs that used to crash with a traceback (issue 11, Low): huge numbers, deep JSON, folders or
# devices where files belong, names too long for a file system.

CASE_MESSAGE = f"error: {CASE}: model '{MODEL}'"
PUBLISHED = "dist/demo_1.tar.gz"
PUBLISHED_MANIFEST = "dist/demo_1.tar.gz.manifest.json"
DEEP_JSON = "[" * 100_000 + "]" * 100_000


def _artifact(breaks: Change | None = None) -> Change:
    """A publishable artifact in dist/ (see publish_support), then ``breaks`` applied to it."""

    def change(root: Path) -> None:
        from support.release.publish_support import make_artifact

        make_artifact(root / "dist")
        if breaks is not None:
            breaks(root)

    return change


def _folder_instead_of(path: str) -> Change:
    def change(root: Path) -> None:
        (root / path).unlink()
        (root / path).mkdir()

    return change


def _write(path: str, text: str) -> Change:
    def change(root: Path) -> None:
        (root / path).write_text(text, encoding="utf-8")

    return change


def _fifo_input(root: Path) -> None:
    os.mkfifo(root / FIXTURES / "pipe")
    _fixture(lambda d: d["inputs"]["IMAGE"].update(files=["pipe"]))(root)


def _surrogate_input(document: Document) -> None:
    del document["inputs"]["IMAGE"]["files"]
    document["inputs"]["IMAGE"]["data"] = ["\ud800"]


PUBLISH = ("publish", PUBLISHED, "--branch", "feature/x")
LOW_ROWS = [
    Row("version_5000_digits", ("validate", MODEL), 1, files={VERSION: "9" * 5000},
        out=(f"{VERSION}: version must be a positive integer such as 1 or 12, got 5000 "
             "characters (max 18 digits)", "invalid: 1 error, 0 warnings in 1 path")),
    Row("fixture_deep_json", ("fixtures", "check", MODEL), 1, files={CASE: DEEP_JSON},
        err=(f"error: {CASE}: refused JSON: nested too deeply to parse",)),
    Row("fixture_5000_digit_int", ("fixtures", "check", MODEL), 1,
        files={CASE: '{"inputs": {"IMAGE": {"data": [' + "9" * 5000 + "]}}}"},
        err=(f"error: {CASE}: refused JSON: an integer with 5000 digits (max 100)",)),
    Row("fixture_lone_surrogate_bytes", ("fixtures", "check", MODEL), 1,
        change=_fixture(_surrogate_input),
        err=(f"{CASE_MESSAGE}: inputs.IMAGE.data[0]: not valid Unicode text ('\\ud800' is a "
             "lone surrogate)",)),
    # Found by tests/unit/model/test_fuzz.py: a list as datatype raised TypeError (unhashable type).
    fixture_row("fixture_datatype_is_a_list",
                f"inputs.IMAGE.datatype [] is not one of {', '.join(KSERVE_DTYPES)}",
                lambda d: d["inputs"]["IMAGE"].update(datatype=[])),
    Row("fixture_file_is_a_fifo", ("fixtures", "check", MODEL), 1, change=_fifo_input,
        err=(f"{CASE_MESSAGE}: inputs.IMAGE.files[0]: {FIXTURES}/pipe is not a regular file",)),
    Row("fixture_file_is_dev_zero", ("fixtures", "check", MODEL), 1,
        change=_fixture(lambda d: d["inputs"]["IMAGE"].update(files=["/dev/zero"])),
        err=(f"{CASE_MESSAGE}: inputs.IMAGE.files[0]: /dev/zero is not a regular file",)),
    Row("new_300_character_name", ("new", "a" * 300), 2,  # a usage error since issue 21
        err=(f"error: invalid model name {'a' * 20!r}... (300 characters): at most 64; it "
             "becomes folder, Triton model and artifact names",)),
    Row("new_models_dir_is_a_file", ("new", "fraud", "--models-dir", "a_file"), 1,
        files={"a_file": "x"},
        err=("error: --models-dir a_file: cannot create a model there: it is a file, not a "
             "folder",)),
    Row("new_models_dir_under_proc", ("new", "fraud", "--models-dir", "/proc/mmetools"), 1,
        err=("error: --models-dir /proc/mmetools: cannot create a model there: No such file or "
             "directory",)),
    Row("junit_xml_is_a_folder", ("test", MODEL, "--junit-xml", MODEL), 2,
        err=(f"error: --junit-xml {MODEL}: is a folder; give a file name such as report.xml",)),
    Row("junit_xml_under_a_file", ("test", MODEL, "--junit-xml", "a_file/report.xml"), 2,
        files={"a_file": "x"},
        err=("error: --junit-xml a_file/report.xml: a_file is a file, not a folder",)),
    Row("build_junit_xml_under_a_file",
        ("build", MODEL, "--out", "dist", "--junit-xml", "a_file/x/report.xml"), 2,
        files={"a_file": "x"},
        err=("error: --junit-xml a_file/x/report.xml: a_file is a file, not a folder",)),
    Row("publish_manifest_deep_json", PUBLISH, 1,
        change=_artifact(_write(PUBLISHED_MANIFEST, DEEP_JSON)),
        err=(f"error: {PUBLISHED_MANIFEST}: not a readable JSON manifest: nested too deeply to "
             "parse",)),
    Row("publish_manifest_5000_digit_int", PUBLISH, 1,
        change=_artifact(_write(PUBLISHED_MANIFEST, '{"version": ' + "9" * 5000 + "}")),
        err=(f"error: {PUBLISHED_MANIFEST}: not a readable JSON manifest: an integer with 5000 "
             "digits (max 100)",)),
    Row("publish_manifest_is_an_empty_object", PUBLISH, 1,
        change=_artifact(_write(PUBLISHED_MANIFEST, "{}")),
        err=(f"error: {PUBLISHED_MANIFEST}: field 'format' is missing (not a manifest written by "
             "`mmetools build`; rebuild the artifact)",)),
    Row("publish_manifest_is_a_folder", PUBLISH, 1,
        change=_artifact(_folder_instead_of(PUBLISHED_MANIFEST)),
        err=(f"error: {PUBLISHED_MANIFEST}: a folder, not a manifest file",)),
    Row("publish_sha256_is_a_folder", PUBLISH, 1,
        change=_artifact(_folder_instead_of(f"{PUBLISHED}.sha256")),
        err=(f"error: {PUBLISHED}.sha256: cannot read it: Is a directory",)),
]  # fmt: skip


@pytest.mark.parametrize("row", LOW_ROWS, ids=lambda row: row.id)
def test_inputs_that_used_to_crash(
    row: Row, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(workdir) if row.argv[0] == "new" else None
    check(row, workdir, capsys)
    if before is not None:  # nothing half written
        assert tree(workdir) == sorted(before + list(row.files))


def test_settings_file_that_is_not_utf8(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "mmetools.toml").write_bytes(b'[triton]\nmode = "caf\xe9"\n')
    check(
        Row("settings_latin1", ("package", MODEL, "--out", "dist"), 1,
            err=(f"error: {workdir / 'mmetools.toml'}: not UTF-8 text (byte 0xe9 at offset 20); "
                 "TOML files must be UTF-8",)),
        workdir,
        capsys,
    )  # fmt: skip
    assert not (workdir / "dist").exists()
