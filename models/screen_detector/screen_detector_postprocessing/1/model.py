"""screen_detector_postprocessing: class logits -> label and its probability.

LOGITS      TYPE_FP32   [2]  raw scores of the classes listed in 1/labels.txt (one per line)
LABEL       TYPE_STRING [1]  the most probable class
PROBABILITY TYPE_FP32   [1]  softmax probability of that class
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils

LABELS_FILE = "labels.txt"
INPUT_NAME = "LOGITS"
LABEL_OUTPUT = "LABEL"
PROBABILITY_OUTPUT = "PROBABILITY"


def load_labels(path: str) -> tuple[str, ...]:
    """One label per line, in the order of the network's outputs."""
    with open(path, encoding="utf-8") as f:
        labels = tuple(line.strip() for line in f if line.strip())
    if len(labels) < 2:
        raise ValueError(f"{path}: expected at least 2 labels, one per line, found {len(labels)}")
    return labels


def softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Numerically stable softmax over the last axis, float32."""
    values = np.asarray(logits, dtype=np.float32)
    exp = np.exp(values - values.max(axis=-1, keepdims=True))
    probabilities: npt.NDArray[np.float32] = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


def postprocess(
    logits: npt.NDArray[Any], labels: Sequence[str]
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]:
    """LOGITS [B, C] -> (LABEL [B, 1] object array of bytes, PROBABILITY [B, 1] float32)."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(
            f"{INPUT_NAME}: expected shape [batch, {len(labels)}], got {list(logits.shape)}"
        )
    probabilities = softmax(logits)
    best = probabilities.argmax(axis=1)
    label = np.array([[labels[i].encode("utf-8")] for i in best], dtype=np.object_)
    probability = probabilities[np.arange(len(best)), best].reshape(-1, 1).astype(np.float32)
    return label.reshape(-1, 1), probability


class TritonPythonModel:
    """Triton Python backend entry point."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model_name = args["model_name"]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.labels = load_labels(os.path.join(version_dir, LABELS_FILE))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            try:
                label, probability = postprocess(logits, self.labels)
            except ValueError as e:
                error = pb_utils.TritonError(f"{self.model_name}: {e}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            outputs = [
                pb_utils.Tensor(LABEL_OUTPUT, label),
                pb_utils.Tensor(PROBABILITY_OUTPUT, probability),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
