"""Builders shared by the validation tests: configs, text edits, repository and folder writers.

Repositories are written into tmp_path from small config strings. The base repository is a valid
three-step pipeline (foo_preprocessing -> foo_inferencer -> foo_postprocessing wired by
foo_pipeline); each case applies a few text edits and lists every problem it expects, so a test
also fails when a broken config produces follow-on noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmetools.model.validation import Problem, validate_repository

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


@dataclass(frozen=True)
class Case:
    id: str
    edits: Sequence[Edit] = ()
    expected: Sequence[str] = ()
    extra: Mapping[str, str] = field(default_factory=dict)  # more models
    versions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    drop: Sequence[str] = ()  # models to leave out


def pipe_step2(new: str) -> Edit:
    return ("foo_pipeline", 'model_name: "foo_inferencer" model_version: -1', new)


def check_case(tmp_path: Path, case: Case) -> None:
    """Write the base repository with the case's changes; its problems are exactly the expected."""
    configs = edited({**BASE, **case.extra}, case.edits)
    for name in case.drop:
        del configs[name]
    root = write_repository(tmp_path / "repo", configs, case.versions)
    assert lines(validate_repository(root)) == list(case.expected)


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
    # The project requires Python steps to point at their packed env (mmetools writes no config).
    configs = {
        name: text + (ENV % DEFAULT_ENV if 'backend: "python"' in text and
                      "EXECUTION_ENV_PATH" not in text else "")
        for name, text in (configs or BASE).items()
    }  # fmt: skip
    write_repository(folder, configs, versions, with_model_files=with_model_files)
    if version_text is not None:
        (folder / "model_version.txt").write_text(version_text, encoding="utf-8")
    if requirements:
        (folder / "requirements.txt").write_text("numpy\n", encoding="utf-8")
    return folder


ENV = 'parameters: { key: "EXECUTION_ENV_PATH", value: { string_value: "%s" } }\n'
DEFAULT_ENV = "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz"
