"""Small model folders for Triton tests: a Python step doubling its input, wired by an ensemble.

They load in about a second (no weights), so tests of server behaviour need not wait for the
example models. Sending the value 666 makes the step SIGKILL its parent, the tritonserver: a
crash in the middle of a run.
"""

from __future__ import annotations

import json
from pathlib import Path

DOUBLE_STEP = """\
import os
import signal

import numpy as np
import triton_python_backend_utils as pb_utils

CRASH_VALUE = 666


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x == CRASH_VALUE).any():
                os.kill(os.getppid(), signal.SIGKILL)  # the stub's parent is tritonserver
            y = (x * 2).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
        return responses
"""

STEP_CONFIG = """\
name: "{name}_double"
backend: "python"
max_batch_size: 8
input [{{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }}]
output [{{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
"""

PIPELINE_CONFIG = """\
name: "{name}_pipeline"
platform: "ensemble"
max_batch_size: 8
input [{{ name: "VALUES" data_type: TYPE_FP32 dims: [ 2 ] }}]
output [{{ name: "DOUBLED" data_type: TYPE_FP32 dims: [ 2 ] }}]
ensemble_scheduling {{
  step [
    {{
      model_name: "{name}_double"
      model_version: -1
      input_map {{ key: "X" value: "VALUES" }}
      output_map {{ key: "Y" value: "DOUBLED" }}
    }}
  ]
}}
"""


def write_case(
    model: Path,
    case: str,
    values: list[float],
    expected: list[float],
    datatype: str = "FP32",
) -> Path:
    path = model / "tests" / "fixtures" / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "description": f"{case} of {model.name}",
        "inputs": {"VALUES": {"datatype": datatype, "shape": [1, 2], "data": values}},
        "expected": {"DOUBLED": {"datatype": "FP32", "shape": [1, 2], "data": expected}},
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def write_tiny_model(root: Path, name: str = "tiny") -> Path:
    """``root/<name>/``: model folder with <name>_double (Python) and <name>_pipeline, and one
    passing fixture case, ``double``."""
    model = root / name
    step = model / f"{name}_double"
    (step / "1").mkdir(parents=True)
    (step / "config.pbtxt").write_text(STEP_CONFIG.format(name=name), encoding="utf-8")
    (step / "1" / "model.py").write_text(DOUBLE_STEP, encoding="utf-8")
    pipeline = model / f"{name}_pipeline"
    pipeline.mkdir()
    (pipeline / "config.pbtxt").write_text(PIPELINE_CONFIG.format(name=name), encoding="utf-8")
    (model / "model_version.txt").write_text("1\n", encoding="utf-8")
    (model / "requirements.txt").write_text("numpy==1.26.4\n", encoding="utf-8")
    write_case(model, "double", [1.0, 2.5], [2.0, 5.0])
    return model
