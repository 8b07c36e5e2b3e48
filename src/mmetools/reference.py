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

Python steps see a stand-in ``triton_python_backend_utils`` (:mod:`mmetools.pb_utils_standin`):
the real module needs Triton's compiled stub for its C++ half (Tensor, InferenceResponse, ...).
BLS calls and decoupled models are not supported here.

Every tensor a step produces is checked against that step's config (datatype, dims), and every
ensemble output against the ensemble's config, so a mismatch names the step and tensor here
instead of surfacing as an opaque error from Triton.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import re
import sys
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.errors import ConfigError, FixtureError, MmetoolsError, ModelRunError
from mmetools.fixtures import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    CaseResult,
    EnsembleSignature,
    FixtureCase,
    compare_case,
    datatype_of_array,
    fixture_paths,
    format_fixture,
    kserve_datatype,
    load_fixtures,
    parse_case,
    read_fixture_document,
    update_expected,
    write_fixture,
)
from mmetools.model_config import (
    ONNX_PLATFORM,
    PYTHON_BACKEND,
    TORCHSCRIPT_PLATFORM,
    RepositoryModel,
    backend_of,
    is_ensemble,
)
from mmetools.model_folder import ModelFolder, missing_step_output_message, weight_filename
from mmetools.pb_utils_standin import (
    PB_UTILS_MODULE,
    InferenceRequest,
    InferenceResponse,
    Tensor,
    as_triton_array,
    installed_pb_utils,
    triton_config_json,
)

logger = logging.getLogger(__name__)

_INDEXED_NAME = re.compile(r"^.+__(\d+)$")
_module_counter = itertools.count()

Arrays = Mapping[str, npt.NDArray[Any]]


# --------------------------------------------------------------------------------------------
# Steps


@dataclass(frozen=True)
class _TensorDecl:
    name: str
    datatype: str  # KServe name
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None


def _declarations(tensors: Any) -> dict[str, _TensorDecl]:
    return {
        t.name: _TensorDecl(
            t.name,
            kserve_datatype(t.data_type),
            tuple(int(d) for d in t.dims),
            tuple(int(d) for d in t.reshape.shape) if t.HasField("reshape") else None,
        )
        for t in tensors
    }


class _Step:
    """One loaded model of the ensemble; ``run`` maps its input names to its output names."""

    kind = "?"

    def __init__(self, model: RepositoryModel, version: int) -> None:
        self.model = model
        self.version = version
        self.version_dir = model.path / str(version)
        self.inputs = _declarations(model.config.input)
        self.outputs = _declarations(model.config.output)
        self.max_batch_size = int(model.config.max_batch_size)

    @property
    def name(self) -> str:
        return self.model.name

    def run(self, inputs: Arrays, requested: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PythonStep(_Step):
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
                f"{type(e).__name__}: {e}\n{_user_traceback(e, self.model.path)}"
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


class _OnnxStep(_Step):
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


class _TorchScriptStep(_Step):
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


# --------------------------------------------------------------------------------------------
# The ensemble


@dataclass(frozen=True)
class _PlannedStep:
    index: int
    model: RepositoryModel
    version: int
    input_map: Mapping[str, str]  # step input -> ensemble tensor
    output_map: Mapping[str, str]  # step output -> ensemble tensor


@dataclass(frozen=True)
class StepTiming:
    step: str
    kind: str
    load_seconds: float


class ReferenceRunner:
    """Runs ``model``'s ensemble in-process. Use as a context manager: steps load (initialize) on
    enter, run once per ``run()`` call, and finalize on exit. ``timings`` holds each step's load
    time once open."""

    def __init__(self, model: ModelFolder) -> None:
        self.model = model
        self.timings: list[StepTiming] = []
        self._steps: list[tuple[_PlannedStep, _Step]] = []
        self._ensemble: RepositoryModel | None = None
        self._pb_context: Any = None

    def __enter__(self) -> ReferenceRunner:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> None:
        ensemble = self.model.ensemble()
        repository = self.model.repository()
        plan = plan_steps(ensemble, repository)
        self._ensemble = ensemble
        self._pb_context = installed_pb_utils()
        pb_utils = self._pb_context.__enter__()
        try:
            for planned in plan:
                started = time.perf_counter()
                step = _load_step(planned, pb_utils)
                self._steps.append((planned, step))
                self.timings.append(StepTiming(step.name, step.kind, time.perf_counter() - started))
                logger.debug(
                    "loaded %s (%s) in %.3fs", step.name, step.kind, self.timings[-1].load_seconds
                )
        except BaseException:
            with suppress(Exception):  # the load error is the one to report
                self.close()
            raise

    def close(self) -> None:
        errors: list[BaseException] = []
        for _, step in reversed(self._steps):
            try:
                step.close()
            except Exception as e:  # finalize every step even when one fails
                errors.append(e)
        self._steps.clear()
        if self._pb_context is not None:
            self._pb_context.__exit__(None, None, None)
            self._pb_context = None
        if errors:
            raise errors[0]

    def run(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        """Ensemble inputs -> ensemble outputs (every output of the ensemble config)."""
        ensemble = self._ensemble
        if ensemble is None:
            raise RuntimeError("ReferenceRunner.run() called before open()")
        declared_inputs = _declarations(ensemble.config.input)
        where = f"{ensemble.config_path}"
        missing = [name for name in declared_inputs if name not in inputs]
        if missing:
            raise ModelRunError(f"{where}: ensemble inputs not given: {', '.join(missing)}")
        pool: dict[str, npt.NDArray[Any]] = {}
        for name, decl in declared_inputs.items():
            array = as_triton_array(np.asarray(inputs[name]))
            _check_tensor(array, decl, ensemble, "input", where)
            pool[name] = array
        for planned, step in self._steps:
            step_inputs: dict[str, npt.NDArray[Any]] = {}
            for step_input, tensor in planned.input_map.items():
                decl = step.inputs[step_input]
                array = pool[tensor]
                _check_tensor(array, decl, planned.model, "input", where, via=tensor)
                if decl.reshape is not None:
                    array = _reshape(array, decl.reshape, planned.model.config.max_batch_size)
                step_inputs[step_input] = array
            requested = list(planned.output_map)
            produced = step.run(step_inputs, requested)
            for step_output, tensor in planned.output_map.items():
                if step_output not in produced:
                    raise ModelRunError(
                        missing_step_output_message(
                            planned.model, step_output, tensor, sorted(produced)
                        )
                    )
                decl = step.outputs[step_output]
                array = as_triton_array(np.asarray(produced[step_output]))
                if decl.reshape is not None:
                    array = _reshape(array, decl.dims, planned.model.config.max_batch_size)
                _check_tensor(array, decl, planned.model, "output", where, via=tensor)
                pool[tensor] = array
        outputs: dict[str, npt.NDArray[Any]] = {}
        for name, decl in _declarations(ensemble.config.output).items():
            if name not in pool:
                raise ModelRunError(f"{where}: ensemble output '{name}' was not produced")
            _check_tensor(pool[name], decl, ensemble, "output", where)
            outputs[name] = pool[name]
        return outputs


def plan_steps(
    ensemble: RepositoryModel, repository: Mapping[str, RepositoryModel]
) -> list[_PlannedStep]:
    """The ensemble's steps in an order where every step's inputs exist before it runs."""
    where = str(ensemble.config_path)
    steps: list[_PlannedStep] = []
    for index, step in enumerate(ensemble.config.ensemble_scheduling.step, start=1):
        if step.model_name not in repository:
            raise ConfigError(
                f"{where}: step {index} runs model '{step.model_name}', which is not a folder "
                f"of {ensemble.path.parent}"
            )
        model = repository[step.model_name]
        if not model.versions:
            raise ConfigError(f"{model.path}: no numeric version folder (e.g. 1/)")
        version = int(step.model_version)
        if version < 0:
            version = max(model.versions)
        elif version not in model.versions:
            raise ConfigError(
                f"{where}: step {index} asks for version {version} of '{model.name}', which has "
                f"versions {', '.join(map(str, model.versions))}"
            )
        declared_inputs = {t.name for t in model.config.input}
        declared_outputs = {t.name for t in model.config.output}
        for key in step.input_map:
            if key not in declared_inputs:
                raise ConfigError(
                    f"{where}: step {index} maps '{key}', which is not an input of "
                    f"'{model.name}'"
                )
        for key in step.output_map:
            if key not in declared_outputs:
                raise ConfigError(
                    f"{where}: step {index} maps '{key}', which is not an output of "
                    f"'{model.name}'"
                )
        unmapped = [
            t.name for t in model.config.input if t.name not in step.input_map and not t.optional
        ]
        if unmapped:
            raise ConfigError(
                f"{where}: step {index} ('{model.name}') leaves inputs unmapped: "
                f"{', '.join(unmapped)}"
            )
        steps.append(
            _PlannedStep(index, model, version, dict(step.input_map), dict(step.output_map))
        )
    available = {t.name for t in ensemble.config.input}
    ordered: list[_PlannedStep] = []
    pending = list(steps)
    while pending:
        ready = [s for s in pending if set(s.input_map.values()) <= available]
        if not ready:
            waiting = "; ".join(
                f"step {s.index} ('{s.model.name}') waits for "
                + ", ".join(sorted(set(s.input_map.values()) - available))
                for s in pending
            )
            raise ConfigError(
                f"{where}: steps can never run (missing or cyclic tensors): {waiting}"
            )
        for step in ready:
            ordered.append(step)
            available.update(step.output_map.values())
            pending.remove(step)
    return ordered


def _load_step(planned: _PlannedStep, pb_utils: types.ModuleType) -> _Step:
    model, version = planned.model, planned.version
    backend = backend_of(model.config)
    if is_ensemble(model.config):
        raise ModelRunError(
            f"{model.config_path}: nested ensemble '{model.name}' is not supported by the "
            "reference runner"
        )
    if backend == PYTHON_BACKEND:
        return _PythonStep(model, version, pb_utils)
    filename = weight_filename(model)
    weights = model.path / str(version) / (filename or "")
    if backend in ("onnxruntime", "pytorch") and not weights.is_file():
        pointer = weights.with_name(weights.name + ".dvc")
        hint = (
            f" (its DVC pointer {pointer.name} is there: run `dvc pull`)"
            if pointer.is_file()
            else ""
        )
        raise ConfigError(f"{weights}: weight file of step '{model.name}' is missing{hint}")
    if model.config.platform == ONNX_PLATFORM or backend == "onnxruntime":
        return _OnnxStep(model, version, weights)
    if model.config.platform == TORCHSCRIPT_PLATFORM or backend == "pytorch":
        return _TorchScriptStep(model, version, weights)
    raise ModelRunError(
        f"{model.config_path}: step '{model.name}' uses backend '{backend or model.config.platform}',"
        " which the reference runner cannot run (python, onnxruntime_onnx, pytorch_libtorch)"
    )


def _check_tensor(
    array: npt.NDArray[Any],
    decl: _TensorDecl,
    model: RepositoryModel,
    role: str,
    where: str,
    via: str | None = None,
) -> None:
    through = f" (ensemble tensor '{via}')" if via and via != decl.name else ""
    datatype = datatype_of_array(array)
    subject = f"{role} '{decl.name}' of '{model.name}'{through}"
    if datatype != decl.datatype:
        raise ModelRunError(
            f"{where}: {subject} is {datatype or array.dtype} but {model.config_path} declares "
            f"{decl.datatype}"
        )
    batched = model.config.max_batch_size > 0
    dims = decl.dims
    shape = tuple(int(d) for d in array.shape)
    body = shape[1:] if batched else shape
    ok = len(body) == len(dims) and all(d == -1 or d == s for s, d in zip(body, dims))
    if batched and shape and shape[0] > model.config.max_batch_size:
        ok = False
    if not ok or (batched and not shape):
        declared = (["batch"] if batched else []) + [str(d) for d in dims]
        raise ModelRunError(
            f"{where}: {subject} has shape {list(shape)} but {model.config_path} declares "
            f"[{', '.join(declared)}]"
        )


def _reshape(
    array: npt.NDArray[Any], shape: tuple[int, ...], max_batch_size: int
) -> npt.NDArray[Any]:
    if max_batch_size > 0:
        return array.reshape((array.shape[0], *shape))
    return array.reshape(shape)


def _user_traceback(error: BaseException, folder: Path) -> str:
    """The traceback frames inside the model's own files (not mmetools' or numpy's)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if str(Path(frame.filename).resolve()).startswith(str(folder.resolve()))
    ]
    if not frames:
        return ""
    return "".join(traceback.format_list(frames[-5:])).rstrip()


# --------------------------------------------------------------------------------------------
# Convenience


def run_reference(model: ModelFolder, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
    """Run the ensemble once on ``inputs``."""
    with ReferenceRunner(model) as runner:
        return runner.run(inputs)


def run_cases(
    model: ModelFolder,
    cases: Sequence[FixtureCase] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Run fixture cases through the reference runner and compare; a case whose run fails is a
    CaseResult with ``error`` set (the others still run)."""
    if cases is None:
        cases = load_fixtures(model)
    results: list[CaseResult] = []
    with ReferenceRunner(model) as runner:
        for case in cases:
            try:
                outputs = runner.run(case.input_arrays())
            except ModelRunError as e:
                result = CaseResult(case, (), str(e))
            else:
                result = compare_case(case, outputs)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


# --------------------------------------------------------------------------------------------
# Regenerating expected values


@dataclass(frozen=True)
class ExpectedChange:
    """How one expected output of a case changed. ``status`` is "unchanged", "within tolerance"
    (float values moved, but less than the output's atol/rtol), "changed" or "shape changed";
    ``max_abs_change`` is None for BYTES and when the shape changed."""

    case: str
    output: str
    status: str
    max_abs_change: float | None
    values_changed: int
    values: int


@dataclass(frozen=True)
class RegeneratedCase:
    case: str
    path: Path
    changes: tuple[ExpectedChange, ...]
    written: bool

    @property
    def changed(self) -> bool:
        return any(c.status != "unchanged" for c in self.changes)


def regenerate_fixtures(
    model: ModelFolder, case_names: Sequence[str] = (), *, write: bool = True
) -> list[RegeneratedCase]:
    """Recompute the ``expected`` data (and shape) of every case, or of ``case_names``, with the
    reference runner; datatypes, tolerances, descriptions and inputs are kept. All cases are
    computed before any file is written; each file is replaced atomically, and only when its
    text changes."""
    try:
        ensemble = model.ensemble()
    except ConfigError as e:
        raise FixtureError(
            f"{model.path}: cannot regenerate fixtures of '{model.name}': {e}"
        ) from e
    signature = EnsembleSignature.from_config(ensemble.config)
    paths = fixture_paths(model)
    if case_names:
        by_name = {p.stem: p for p in paths}
        unknown = [n for n in case_names if n not in by_name]
        if unknown:
            raise FixtureError(
                f"{model.fixtures_dir}: no case named {', '.join(repr(n) for n in unknown)} "
                f"(cases: {', '.join(by_name) or 'none'})"
            )
        paths = [by_name[n] for n in dict.fromkeys(case_names)]
    if not paths:
        raise FixtureError(
            f"{model.fixtures_dir}: model '{model.name}' has no fixture cases (*.json)"
        )
    pending: list[tuple[Path, dict[str, Any], str, tuple[ExpectedChange, ...]]] = []
    with ReferenceRunner(model) as runner:
        for path in paths:
            document = read_fixture_document(path)
            case = parse_case(document, path, signature, model.name, check_expected=False)
            try:
                outputs = runner.run(case.input_arrays())
            except ModelRunError as e:
                raise ModelRunError(f"case '{case.name}' ({path}): {e}") from e
            try:
                updated = update_expected(document, outputs)
            except FixtureError as e:
                raise FixtureError(f"{path}: {e}") from e
            parse_case(updated, path, signature, model.name)  # the new values must fit too
            changes = tuple(
                _expected_change(case.name, name, document["expected"][name], entry)
                for name, entry in updated["expected"].items()
            )
            pending.append((path, updated, format_fixture(updated), changes))
    results: list[RegeneratedCase] = []
    for path, updated, text, changes in pending:
        written = False
        if write and path.read_text(encoding="utf-8") != text:
            write_fixture(path, updated)
            written = True
        results.append(RegeneratedCase(path.stem, path, changes, written))
    return results


def _expected_change(case: str, output: str, old: Any, new: Mapping[str, Any]) -> ExpectedChange:
    new_data = list(new["data"])
    old_data = old.get("data") if isinstance(old, Mapping) else None
    old_shape = old.get("shape") if isinstance(old, Mapping) else None
    count = len(new_data)
    if not isinstance(old_data, list) or old_shape != new["shape"] or len(old_data) != count:
        return ExpectedChange(case, output, "shape changed", None, count, count)
    differing = sum(1 for a, b in zip(old_data, new_data) if not _same_value(a, b))
    if not differing:
        return ExpectedChange(
            case, output, "unchanged", 0.0 if _numeric(new_data) else None, 0, count
        )
    if not (_numeric(old_data) and _numeric(new_data)):
        return ExpectedChange(case, output, "changed", None, differing, count)
    before = np.asarray(old_data, dtype=np.float64)
    after = np.asarray(new_data, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        deltas = np.abs(before - after)
    nan_moved = np.isnan(deltas) & ~(np.isnan(before) & np.isnan(after))
    deltas = np.where(np.isnan(deltas), np.where(nan_moved, np.inf, 0.0), deltas)
    atol = float(new.get("atol", DEFAULT_ATOL))
    rtol = float(new.get("rtol", DEFAULT_RTOL))
    # "within tolerance": the old values would still have passed against the new ones
    within = bool((deltas <= atol + rtol * np.abs(after)).all()) and new.get("datatype") in (
        "FP16",
        "FP32",
        "FP64",
    )
    status = "within tolerance" if within else "changed"
    return ExpectedChange(case, output, status, float(deltas.max()), differing, count)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _same_value(a: Any, b: Any) -> bool:
    if _numeric([a, b]):
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    return type(a) is type(b) and bool(a == b)
