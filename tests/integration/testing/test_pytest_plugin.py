"""The pytest plugin, used the way a model folder's own tests use it (pytester, real server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.testing.tiny_models import write_tiny_model

pytest_plugins = ["pytester"]

MODEL_TESTS = """
import numpy as np
import pytest

from mmetools.core.errors import TritonError


def test_doubles(triton_model, triton_infer):
    name = triton_model("tiny")
    assert name == "tiny_pipeline"
    outputs = triton_infer(name, {"VALUES": np.array([[1.0, -3.0]], dtype=np.float32)})
    assert outputs["DOUBLED"].tolist() == [[2.0, -6.0]]


def test_loaded_once_per_session(triton_model, triton_server):
    assert triton_model("tiny") == "tiny_pipeline"
    assert triton_server.request("GET", "/v2/models/tiny_pipeline/ready").status == 200


def test_load_failure_raises_with_the_log(triton_model):
    with pytest.raises(TritonError) as error:
        triton_model("broken")
    assert "Triton could not load 'broken_pipeline'" in str(error.value)
    assert "NameError" in str(error.value)
"""


@pytest.mark.integration
def test_model_tests_get_a_running_server_and_helpers(
    pytester: pytest.Pytester, no_triton_leftovers: Path
) -> None:
    write_tiny_model(pytester.path)
    broken = write_tiny_model(pytester.path, "broken")
    step = broken / "broken_double" / "1" / "model.py"
    step.write_text(step.read_text().replace("CRASH_VALUE = 666", "CRASH_VALUE = undefined_name"))
    pytester.makepyfile(test_serving=MODEL_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
