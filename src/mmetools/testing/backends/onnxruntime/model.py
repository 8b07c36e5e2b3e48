"""A Python-based Triton backend named ``onnxruntime``: serves ``platform: "onnxruntime_onnx"``
models with the onnxruntime Python package.

Why it exists: the Triton build in the nvidia-pytriton wheel has no native onnxruntime backend.
Triton core resolves ``onnxruntime_onnx`` to the backend ``onnxruntime`` and, finding no
``libtriton_onnxruntime.so`` but this ``model.py`` in ``<backends>/onnxruntime/``, runs it through
the python backend. The model folder itself is served unmodified: the weight file is
``<model>/<version>/<default_model_filename or model.onnx>`` as for the native backend.

mmetools copies this file into the backends folder it assembles; it never imports it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_FILENAME = "model.onnx"
# Set by mmetools: site-packages folders holding onnxruntime. The stub runs Python in isolated
# mode with the serving env first on PATH, so the inferencer finds onnxruntime only through here;
# the model's own Python steps never see these folders.
SITE_PACKAGES_VARIABLE = "MMETOOLS_BACKEND_SITE_PACKAGES"


def add_backend_site_packages() -> None:
    for folder in os.environ.get(SITE_PACKAGES_VARIABLE, "").split(os.pathsep):
        if folder and folder not in sys.path:
            sys.path.append(folder)


def weight_path(args: dict[str, Any], config: dict[str, Any]) -> str:
    """The .onnx file of this version; a folder named model.onnx holds it with external data."""
    filename = config.get("default_model_filename") or DEFAULT_FILENAME
    path = os.path.join(args["model_repository"], str(args["model_version"]), filename)
    if os.path.isdir(path):
        path = os.path.join(path, DEFAULT_FILENAME)
    return path


def providers_for(args: dict[str, Any], available: list[str]) -> list[Any]:
    """CUDA when Triton placed this instance on a GPU and onnxruntime can use one, else CPU."""
    if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in available:
        device = int(args.get("model_instance_device_id", 0))
        return [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        add_backend_site_packages()
        import onnxruntime as ort

        self.model_name = str(args["model_name"])
        self.config = json.loads(args["model_config"])
        path = weight_path(args, self.config)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"{self.model_name}: weight file {path} not found (run `dvc pull`?)"
            )
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(
            path, options, providers=providers_for(args, ort.get_available_providers())
        )
        model_inputs = {i.name for i in self.session.get_inputs()}
        model_outputs = {o.name for o in self.session.get_outputs()}
        self.inputs = [i["name"] for i in self.config.get("input", [])]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"]))
            for o in self.config.get("output", [])
        ]
        for name in self.inputs:
            if name not in model_inputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config input '{name}' is not an input of {path} "
                    f"(its inputs: {', '.join(sorted(model_inputs))})"
                )
        for name, _ in self.outputs:
            if name not in model_outputs:
                raise pb_utils.TritonModelException(
                    f"{self.model_name}: config output '{name}' is not an output of {path} "
                    f"(its outputs: {', '.join(sorted(model_outputs))})"
                )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                feed = {}
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:  # optional inputs may be absent
                        feed[name] = tensor.as_numpy()
                names = [name for name, _ in self.outputs]
                values = self.session.run(names, feed)
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype))
                    for (name, dtype), value in zip(self.outputs, values)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # one bad request must not take the model down
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.model_name}: onnxruntime: {e}")
                    )
                )
        return responses

    def finalize(self) -> None:
        self.session = None
