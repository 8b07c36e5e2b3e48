"""mmetools.model.validation.bls: models a Python step requests through BLS must ship beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.model.validation import validate_repository
from support.model.validation_support import BASE, lines, write_repository

PRE_MODEL = "repo/foo_preprocessing/1/model.py"


def _with_model_py(tmp_path: Path, code: str) -> Path:
    root = write_repository(tmp_path / "repo", BASE)
    (root / "foo_preprocessing" / "1" / "model.py").write_text(code, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "call",
    [
        'pb_utils.InferenceRequest(model_name="foo_inferencer", inputs=[], '
        "requested_output_names=[])",
        'pb_utils.InferenceRequest("foo_inferencer", [], [])',
        "pb_utils.InferenceRequest(model_name=TARGET, inputs=[])",
    ],
)
def test_bls_call_to_a_model_of_the_repository_is_fine(tmp_path: Path, call: str) -> None:
    code = f'TARGET = "foo_inferencer"\n\ndef run(pb_utils):\n    return {call}\n'
    assert lines(validate_repository(_with_model_py(tmp_path, code))) == []


def test_bls_call_to_a_model_outside_the_artifact_is_an_error(tmp_path: Path) -> None:
    code = (
        "import triton_python_backend_utils as pb_utils\n\n"
        "def run():\n"
        '    return pb_utils.InferenceRequest(model_name="text_encoder", inputs=[])\n'
    )
    assert lines(validate_repository(_with_model_py(tmp_path, code))) == [
        f"{PRE_MODEL}:4: foo_preprocessing requests model 'text_encoder' through BLS, but it is "
        "not a model folder here, so it is not in the artifact and a multi-model endpoint does "
        "not load it (models: foo_inferencer, foo_pipeline, foo_postprocessing, "
        "foo_preprocessing)"
    ]


def test_bls_name_built_at_run_time_is_a_warning(tmp_path: Path) -> None:
    code = (
        "def run(pb_utils, suffix):\n"
        '    return pb_utils.InferenceRequest(model_name=f"enc_{suffix}", inputs=[])\n'
    )
    assert lines(validate_repository(_with_model_py(tmp_path, code))) == [
        f"{PRE_MODEL}:2: warning: foo_preprocessing requests a model through BLS whose name is "
        "built at run time (f'enc_{suffix}'); it cannot be checked, and a multi-model endpoint "
        "serves only the models in this artifact"
    ]


def test_model_py_that_does_not_parse_is_left_to_triton(tmp_path: Path) -> None:
    assert lines(validate_repository(_with_model_py(tmp_path, "def (:\n"))) == []
