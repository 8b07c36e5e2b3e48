"""A Python-based Triton backend named ``pytorch``: serves ``platform: "pytorch_libtorch"``
TorchScript models with torch from Python.

Why it exists: the Triton build in the nvidia-pytriton wheel has no native libtorch backend.
Triton core resolves ``pytorch_libtorch`` to the backend ``pytorch`` and, finding no
``libtriton_pytorch.so`` but this ``model.py`` in ``<backends>/pytorch/``, runs it through the
python backend. The model folder is served unmodified: ``<model>/<version>/<default_model_filename
or model.pt>`` loaded with ``torch.jit.load``.

Tensors are matched the way the native backend does it: inputs named ``<anything>__<i>`` go to
forward() position i, else inputs named like forward()'s arguments go to those, else config order;
outputs named ``<anything>__<i>`` take element i of the returned tuple, else config order.

mmetools copies this file into the backends folder it assembles; it never imports it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_FILENAME = "model.pt"
SITE_PACKAGES_VARIABLE = "MMETOOLS_BACKEND_SITE_PACKAGES"  # see the onnxruntime backend
_INDEXED = re.compile(r"^.+__(\d+)$")


def add_backend_site_packages() -> None:
    for folder in os.environ.get(SITE_PACKAGES_VARIABLE, "").split(os.pathsep):
        if folder and folder not in sys.path:
            sys.path.append(folder)


def indexed_order(names: list[str]) -> list[str] | None:
    """Names sorted by their ``__<i>`` suffix when every name has one, else None."""
    indices = [_INDEXED.match(name) for name in names]
    if not names or not all(indices):
        return None
    return [name for _, name in sorted(zip((int(m.group(1)) for m in indices if m), names))]


def input_order(config_names: list[str], forward_arguments: list[str]) -> list[str]:
    """The config input names in the order forward() takes them."""
    indexed = indexed_order(config_names)
    if indexed is not None:
        return indexed
    if set(config_names) <= set(forward_arguments):
        return [name for name in forward_arguments if name in config_names]
    return list(config_names)


def as_tuple(result: Any) -> tuple[Any, ...]:
    if isinstance(result, (tuple, list)):
        return tuple(result)
    return (result,)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        add_backend_site_packages()
        import torch

        self.torch = torch
        self.model_name = str(args["model_name"])
        self.config = json.loads(args["model_config"])
        filename = self.config.get("default_model_filename") or DEFAULT_FILENAME
        path = os.path.join(args["model_repository"], str(args["model_version"]), filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"{self.model_name}: weight file {path} not found (run `dvc pull`?)"
            )
        use_gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
        device_id = int(args.get("model_instance_device_id", 0))
        self.device = torch.device(f"cuda:{device_id}" if use_gpu else "cpu")
        self.module: Any = torch.jit.load(path, map_location=self.device)  # type: ignore[no-untyped-call]
        self.module.eval()
        try:
            arguments = [a.name for a in self.module.forward.schema.arguments][1:]  # skip self
        except (AttributeError, RuntimeError):
            arguments = []
        config_inputs = [i["name"] for i in self.config.get("input", [])]
        self.inputs = input_order(config_inputs, arguments)
        outputs = [o["name"] for o in self.config.get("output", [])]
        dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
            for o in self.config.get("output", [])
        }
        indexed = indexed_order(outputs)
        if indexed is not None:
            positions = [int(_INDEXED.match(name).group(1)) for name in indexed]  # type: ignore[union-attr]
        else:
            indexed, positions = outputs, list(range(len(outputs)))
        self.outputs = [
            (name, position, dtypes[name]) for name, position in zip(indexed, positions)
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        torch = self.torch
        responses = []
        for request in requests:
            try:
                arguments = []
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is None:
                        raise ValueError(f"input '{name}' missing from the request")
                    array = np.ascontiguousarray(tensor.as_numpy())
                    arguments.append(torch.from_numpy(array).to(self.device))
                with torch.inference_mode():
                    results = as_tuple(self.module(*arguments))
                tensors = []
                for name, position, dtype in self.outputs:
                    if position >= len(results):
                        raise ValueError(
                            f"output '{name}' wants result {position} but forward() returned "
                            f"{len(results)} value(s)"
                        )
                    value = results[position].detach().cpu().numpy()
                    tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype)))
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # one bad request must not take the model down
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.model_name}: pytorch: {e}")
                    )
                )
        return responses

    def finalize(self) -> None:
        self.module = None
