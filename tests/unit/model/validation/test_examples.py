"""The example models of the repository validate clean, and broken copies of them report exactly
what was broken."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.model.validation import validate_path
from support.model.validation_support import ENV, lines

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
