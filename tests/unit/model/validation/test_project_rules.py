"""mmetools.model.validation.project_rules: the project's rules on models/<name>/, on top of Triton's."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.model.validation import validate_model_folder, validate_path
from support.model.validation_support import (
    BASE,
    ENV,
    FOLDER,
    INF,
    PIPE,
    STEPS,
    WRAPPER,
    X_TO_Y,
    Edit,
    edited,
    lines,
    write_model_folder,
)


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


def _folder_with_one_problem(tmp_path: Path, edit: Edit, expected: str) -> Path:
    """models/foo with ``edit`` applied, asserting that it reports exactly ``expected``."""
    folder = write_model_folder(tmp_path, edited(BASE, [edit]))
    assert lines(validate_path(folder)) == [expected]
    return folder


def test_python_step_with_default_model_filename(tmp_path: Path) -> None:
    folder = _folder_with_one_problem(
        tmp_path,
        (
            "foo_preprocessing",
            'backend: "python"',
            'backend: "python" default_model_filename: "step.py"',
        ),
        f"{FOLDER}/foo_preprocessing/1: no step.py; the Python backend runs "
        "foo_preprocessing/1/step.py",
    )
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
    folder = _folder_with_one_problem(
        tmp_path,
        (
            "foo_inferencer",
            'platform: "onnxruntime_onnx"',
            'platform: "pytorch_libtorch" default_model_filename: "net.pt"',
        ),
        f"{FOLDER}/foo_inferencer/1: neither net.pt nor its DVC pointer net.pt.dvc; "
        "foo_inferencer loads 1/net.pt (run `dvc pull`, or `dvc add` the weight file)",
    )
    (folder / "foo_inferencer" / "1" / "net.pt.dvc").write_text("outs: []\n", encoding="utf-8")
    assert validate_path(folder) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$$TRITON_MODEL_DIRECTORY/python_env.tar.gz", None),
        (
            # validate, env and package apply one rule: only the step's packed env is accepted
            "$$TRITON_MODEL_DIRECTORY/envs/python_env",
            "parameter EXECUTION_ENV_PATH '$$TRITON_MODEL_DIRECTORY/envs/python_env' must name "
            "the packed env: mmetools places it at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz or $$TRITON_MODEL_DIRECTORY/../foo_env.tar.gz",
        ),
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
            "leaves the step folder through '..'; mmetools places the env at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz or $$TRITON_MODEL_DIRECTORY/../foo_env.tar.gz",
        ),
        # the model's one env beside its steps: the recommended form
        ("$$TRITON_MODEL_DIRECTORY/../foo_env.tar.gz", None),
        (
            "$$TRITON_MODEL_DIRECTORY/",
            "parameter EXECUTION_ENV_PATH '$$TRITON_MODEL_DIRECTORY/' must name the "
            "packed env: mmetools places it at $$TRITON_MODEL_DIRECTORY/python_env.tar.gz or "
            "$$TRITON_MODEL_DIRECTORY/../foo_env.tar.gz",
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


def test_step_without_config_is_an_error_in_a_model_folder(tmp_path: Path) -> None:
    # Triton would auto-complete it, but the packager ships only folders with a config.pbtxt.
    folder = write_model_folder(tmp_path)
    (folder / "foo_inferencer" / "config.pbtxt").unlink()
    (folder / "foo_inferencer" / "1" / "model.onnx").write_bytes(b"onnx")
    problems = [p for p in validate_model_folder(folder) if p.is_error]
    assert [str(p) for p in problems] == [
        "models/foo/foo_inferencer: no config.pbtxt: model 'foo' packages only step folders that "
        "have one, so foo_inferencer would be missing from the artifact; write "
        "foo_inferencer/config.pbtxt"
    ]


def test_python_step_without_execution_env_path_names_the_lines_to_add(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path)
    config = folder / "foo_postprocessing" / "config.pbtxt"
    config.write_text(config.read_text(encoding="utf-8").split("parameters:")[0], encoding="utf-8")
    problems = validate_path(folder)
    assert [str(p) for p in problems] == [
        f"{FOLDER}/foo_postprocessing/config.pbtxt: warning: Python step foo_postprocessing sets "
        "no EXECUTION_ENV_PATH; the env step packs the model's env, which Triton only uses when "
        "the config says so, and refuses to run without it. Add these lines: parameters: "
        '{ key: "EXECUTION_ENV_PATH" value: { string_value: '
        '"$$TRITON_MODEL_DIRECTORY/../foo_env.tar.gz" } }'
    ]
    assert not problems[0].is_error  # `package --no-env` stays possible; the env step refuses
