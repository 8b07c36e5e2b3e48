"""Helpers for the example models' tests: import a step's model.py outside Triton, read fixtures."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
PB_UTILS = "triton_python_backend_utils"


class FakeTensor:
    """Stand-in for pb_utils.Tensor (a C++ class Triton's stub injects)."""

    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array


class FakeTritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor] = field(default_factory=list)
    error: FakeTritonError | None = None

    def output(self, name: str) -> npt.NDArray[Any]:
        (tensor,) = [t for t in self.output_tensors if t.name() == name]
        return tensor.as_numpy()


def fake_pb_utils() -> types.ModuleType:
    """The parts of triton_python_backend_utils the example steps use."""
    module = types.ModuleType(PB_UTILS)
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.TritonError = FakeTritonError  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]

    def get_input_tensor_by_name(request: dict[str, FakeTensor], name: str) -> FakeTensor | None:
        return request.get(name)

    module.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    return module


def request(**tensors: npt.NDArray[Any]) -> dict[str, FakeTensor]:
    """An inference request as the steps see it: input name -> tensor."""
    return {name: FakeTensor(name, array) for name, array in tensors.items()}


def load_step(model: str, step: str) -> types.ModuleType:
    """The step's model.py imported under a unique name, with a fake triton_python_backend_utils
    (its Tensor/InferenceResponse/TritonError are C++ classes only Triton's stub provides)."""
    path = MODELS_DIR / model / step / "1" / "model.py"
    previous = sys.modules.get(PB_UTILS)
    sys.modules[PB_UTILS] = fake_pb_utils()
    try:
        spec = importlib.util.spec_from_file_location(f"example_step_{step}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del sys.modules[PB_UTILS]
        else:
            sys.modules[PB_UTILS] = previous
    return module


def triton_args(model: str, step: str) -> dict[str, str]:
    """The args Triton's python backend passes to initialize() (the keys the steps read)."""
    return {
        "model_name": step,
        "model_repository": str(MODELS_DIR / model / step),
        "model_version": "1",
        "model_instance_kind": "CPU",
    }


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    document: dict[str, Any]

    def input_bytes(self, name: str) -> npt.NDArray[np.object_]:
        """A BYTES input as Triton delivers it: object array of bytes, shape from the fixture."""
        spec = self.document["inputs"][name]
        if "files" in spec:
            items = [(self.path.parent / f).read_bytes() for f in spec["files"]]
        else:
            items = [str(value).encode("utf-8") for value in spec["data"]]
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        return array.reshape(spec["shape"])

    def expected(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.document["expected"][name]
        return spec


def fixture_cases(model: str) -> list[Case]:
    folder = MODELS_DIR / model / "tests" / "fixtures"
    return [
        Case(path.stem, path, json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(folder.glob("*.json"))
    ]


def assert_close(name: str, actual: npt.NDArray[Any], expected: dict[str, Any]) -> None:
    """The fixture contract: |a - e| <= atol + rtol * |e| (defaults 1e-5, 1e-4)."""
    wanted = np.array(expected["data"], dtype=np.float64).reshape(expected["shape"])
    assert actual.shape == wanted.shape, name
    tolerance = expected.get("atol", 1e-5) + expected.get("rtol", 1e-4) * np.abs(wanted)
    error = np.abs(actual.astype(np.float64) - wanted)
    assert np.all(error <= tolerance), f"{name}: max error {error.max()} beyond tolerance"


def assert_bytes(name: str, actual: npt.NDArray[Any], expected: dict[str, Any]) -> None:
    assert list(actual.shape) == expected["shape"], name
    assert [item.decode("utf-8") for item in actual.reshape(-1)] == expected["data"], name
