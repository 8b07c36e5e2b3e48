"""The reference runner: a model folder's ensemble run in-process, in plain Python, without Triton.

This is what produces the expected values of fixtures ("from running the same preprocessing,
model and postprocessing directly in Python (onnxruntime / torch), not from Triton") and what
``mmetools fixtures check`` compares against. It follows the ensemble's steps, ``input_map`` and
``output_map`` in dependency order, as Triton's ensemble scheduler does:

- Python steps: ``<step>/<version>/model.py`` is imported from its file path under a unique module
  name, ``TritonPythonModel().initialize(args)`` receives the same ``args`` dict Triton's python
  backend passes (model_config as the JSON Triton produces, model_repository = the step folder,
  model_version, model_name, model_instance_kind "CPU", ...), ``execute`` gets one request per
  case, ``finalize`` is called when the runner closes.
- ONNX steps (``onnxruntime_onnx``) run with onnxruntime on CPU.
- TorchScript steps (``pytorch_libtorch``) run with ``torch.jit.load`` on CPU, inputs passed in
  the order Triton's pytorch backend uses (``INPUT__<i>`` index, else forward() argument names,
  else config order), outputs taken by ``OUTPUT__<i>`` index, else config order.

Python steps see a stand-in ``triton_python_backend_utils`` (:mod:`mmetools.model.reference.pb_utils_standin`):
the real module needs Triton's compiled stub for its C++ half (Tensor, InferenceResponse, ...).
BLS calls and decoupled models are not supported here.

Every tensor a step produces is checked against that step's config (datatype, dims), and every
ensemble output against the ensemble's config, so a mismatch names the step and tensor here
instead of surfacing as an opaque error from Triton.

Modules: ``steps`` (one runner per step kind), ``runner`` (the ensemble: planning, running,
checking), ``regenerate`` (rewriting fixtures' expected values). This package re-exports them.
"""

from __future__ import annotations

from mmetools.model.reference.regenerate import ExpectedChange, RegeneratedCase, regenerate_fixtures
from mmetools.model.reference.runner import (
    ReferenceRunner,
    StepTiming,
    plan_steps,
    run_cases,
    run_reference,
)
from mmetools.model.reference.steps import Arrays

__all__ = [
    "Arrays",
    "ExpectedChange",
    "ReferenceRunner",
    "RegeneratedCase",
    "StepTiming",
    "plan_steps",
    "regenerate_fixtures",
    "run_cases",
    "run_reference",
]
