"""The reference runner's steps: a Python step (model.py with the pb_utils stand-in), an ONNX step
(onnxruntime) and a TorchScript step (torch.jit), each run in-process on CPU.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import sys
import traceback
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.core.errors import ConfigError, MmetoolsError, ModelRunError
from mmetools.model.cases import kserve_datatype
from mmetools.model.config import RepositoryModel
from mmetools.model.reference.pb_utils_standin import (
    InferenceRequest,
    InferenceResponse,
    Tensor,
    triton_config_json,
)

_INDEXED_NAME = re.compile(r"^.+__(\d+)$")
_module_counter = itertools.count()

Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class TensorDecl:
    name: str
    datatype: str  # KServe name
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None


def tensor_declarations(tensors: Any) -> dict[str, TensorDecl]:
    return {
        t.name: TensorDecl(
            t.name,
            kserve_datatype(t.data_type),
            tuple(int(d) for d in t.dims),
            tuple(int(d) for d in t.reshape.shape) if t.HasField("reshape") else None,
        )
        for t in tensors
    }


class Step:
    """One loaded model of the ensemble; ``run`` maps its input names to its output names."""

    kind = "?"

    def __init__(self, model: RepositoryModel, version: int) -> None:
        self.model = model
        self.version = version
        self.version_dir = model.path / str(version)
        self.inputs = tensor_declarations(model.config.input)
        self.outputs = tensor_declarations(model.config.output)
        self.max_batch_size = int(model.config.max_batch_size)

    @property
    def name(self) -> str:
        return self.model.name

    def run(self, inputs: Arrays, requested: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PythonStep(Step):
    kind = "python"

    def __init__(self, model: RepositoryModel, version: int, pb_utils: types.ModuleType) -> None:
        super().__init__(model, version)
        self.pb_utils = pb_utils
        self.source = self.version_dir / (model.config.default_model_filename or "model.py")
        if not self.source.is_file():
            raise ConfigError(f"{self.source}: missing; Python step '{self.name}' needs it")
        # Modules imported from this step's folders (e.g. a helpers.py beside model.py): Triton
        # runs each step in its own process, so two steps may each have a helpers.py. They are
        # swapped into sys.modules only while this step's code runs.
        self._own_modules: dict[str, types.ModuleType] = {}
        self._unique = f"_mmetools_reference_{next(_module_counter)}_{self.name}"
        try:
            self.module = self._import()
            model_class = getattr(self.module, "TritonPythonModel", None)
            if not isinstance(model_class, type):
                raise ModelRunError(f"{self.source}: defines no class TritonPythonModel")
            config_text = triton_config_json(model.config, model.name)
            args = {
                "model_config": config_text,
                "model_instance_kind": "CPU",
                "model_instance_name": f"{json.loads(config_text)['instance_group'][0]['name']}_0",
                "model_instance_device_id": "0",
                "model_repository": str(model.path),
                "model_version": str(version),
                "model_name": model.config.name or model.name,
            }
            with self._calling("TritonPythonModel()"):
                self.instance = model_class()
            if hasattr(self.instance, "initialize"):
                with self._calling("initialize()"):
                    self.instance.initialize(args)
        except BaseException:
            sys.modules.pop(self._unique, None)
            raise

    def _import(self) -> types.ModuleType:
        # Triton appends the version folder and the step folder to sys.path and imports
        # "<version>.model"; a unique name keeps several steps' model.py apart.
        spec = importlib.util.spec_from_file_location(self._unique, self.source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[self._unique] = module
        with self._calling("import"):
            spec.loader.exec_module(module)
        return module

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Run this step's code: its folders on sys.path, its own modules in sys.modules,
        pb_utils.get_model_dir() answering its version folder, exceptions as ModelRunError."""
        self.pb_utils.get_model_dir.current = str(self.version_dir)
        added = [str(self.version_dir), str(self.model.path)]
        shadowed = {name: sys.modules.get(name) for name in self._own_modules}
        sys.modules.update(self._own_modules)
        before = set(sys.modules)
        sys.path.extend(added)
        try:
            yield
        except MmetoolsError:
            raise
        except Exception as e:
            raise ModelRunError(
                f"{self.source}: {what} of Python step '{self.name}' raised "
                f"{type(e).__name__}: {e}\n{user_traceback(e, self.model.path)}"
            ) from e
        finally:
            for entry in added:
                sys.path.remove(entry)
            folder = self.model.path.resolve()
            for name in set(sys.modules) - before:
                file = getattr(sys.modules[name], "__file__", None)
                if name != self._unique and file and Path(file).resolve().is_relative_to(folder):
                    self._own_modules[name] = sys.modules[name]
            for name in self._own_modules:
                previous = shadowed.get(name)
                if previous is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = previous

    def run(self, inputs: Arrays, requested: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        request = InferenceRequest(
            inputs=[Tensor(name, array) for name, array in inputs.items()],
            requested_output_names=list(requested),
            model_name=self.name,
        )
        with self._calling("execute()"):
            responses = self.instance.execute([request])
        if not isinstance(responses, (list, tuple)) or len(responses) != 1:
            count = len(responses) if isinstance(responses, (list, tuple)) else type(responses)
            raise ModelRunError(
                f"{self.source}: execute() of Python step '{self.name}' must return a list "
                f"with one InferenceResponse per request (1), got {count}"
            )
        response = responses[0]
        if not isinstance(response, InferenceResponse):
            raise ModelRunError(
                f"{self.source}: execute() of Python step '{self.name}' returned "
                f"{type(response).__name__}, expected pb_utils.InferenceResponse"
            )
        error = response.error()
        if error is not None:
            raise ModelRunError(
                f"{self.source}: Python step '{self.name}' answered with an error: "
                f"{error.message()}"
            )
        # Everything the step returned: the caller names what is missing against what came back.
        return {t.name(): t.as_numpy() for t in response.output_tensors()}

    def close(self) -> None:
        if hasattr(self, "instance") and hasattr(self.instance, "finalize"):
            with self._calling("finalize()"):
                self.instance.finalize()
        sys.modules.pop(self._unique, None)


class OnnxStep(Step):
    kind = "onnx"

    def __init__(self, model: RepositoryModel, version: int, weights: Path) -> None:
        super().__init__(model, version)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(weights), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph classes
            raise ModelRunError(f"{weights}: onnxruntime cannot load it: {e}") from e
        self.weights = weights

    def run(self, inputs: Arrays, requested: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        try:
            results = self.session.run(list(requested), dict(inputs))
        except Exception as e:
            raise ModelRunError(
                f"{self.weights}: onnxruntime failed on step '{self.name}': {e}"
            ) from e
        return {name: np.asarray(value) for name, value in zip(requested, results)}


class TorchScriptStep(Step):
    kind = "torchscript"

    def __init__(self, model: RepositoryModel, version: int, weights: Path) -> None:
        super().__init__(model, version)
        import torch

        self.torch = torch
        try:
            load: Any = torch.jit.load  # untyped in torch's stubs
            with warnings.catch_warnings():
                # torch 2.9+ calls TorchScript deprecated; Triton's pytorch backend still loads it
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = load(str(weights), map_location="cpu")
        except Exception as e:
            raise ModelRunError(f"{weights}: torch.jit.load cannot load it: {e}") from e
        self.module.eval()
        self.weights = weights
        self.input_order = self._input_order()
        self.output_index = self._output_index()

    def _input_order(self) -> list[str]:
        # Triton's pytorch backend: all names "<name>__<index>" -> by index; else the names of
        # forward()'s arguments; else config order.
        names = list(self.inputs)
        indexed = [_INDEXED_NAME.match(n) for n in names]
        if all(indexed):
            return sorted(names, key=lambda n: int(_INDEXED_NAME.match(n).group(1)))  # type: ignore[union-attr]
        try:
            arguments = [a.name for a in self.module.forward.schema.arguments][1:]  # skip self
        except (AttributeError, RuntimeError):
            arguments = []
        if sorted(arguments) == sorted(names):
            return arguments
        return names

    def _output_index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for position, name in enumerate(self.outputs):
            match = _INDEXED_NAME.match(name)
            index[name] = int(match.group(1)) if match else position
        return index

    def run(self, inputs: Arrays, requested: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        torch = self.torch
        try:
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_order]
        except TypeError as e:
            raise ModelRunError(
                f"{self.weights}: step '{self.name}': inputs cannot become torch tensors: {e}"
            ) from e
        try:
            with torch.inference_mode():
                result = self.module(*tensors)
        except Exception as e:
            raise ModelRunError(
                f"{self.weights}: TorchScript step '{self.name}' failed: {e}"
            ) from e
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        outputs: dict[str, npt.NDArray[Any]] = {}
        for name in requested:
            position = self.output_index[name]
            if position >= len(values):
                raise ModelRunError(
                    f"{self.weights}: step '{self.name}': output '{name}' is output "
                    f"{position} but the module returned {len(values)} value(s)"
                )
            outputs[name] = values[position].detach().cpu().numpy()
        return outputs


def user_traceback(error: BaseException, folder: Path) -> str:
    """The traceback frames inside the model's own files (not mmetools' or numpy's)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if str(Path(frame.filename).resolve()).startswith(str(folder.resolve()))
    ]
    if not frames:
        return ""
    return "".join(traceback.format_list(frames[-5:])).rstrip()
