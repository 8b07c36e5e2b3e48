"""The reference runner: a model folder's ensemble run in-process, step by step in dependency order
as Triton's ensemble scheduler does, every tensor checked against its config.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.core.errors import ConfigError, ModelRunError
from mmetools.model.cases import (
    CaseResult,
    FixtureCase,
    compare_case,
    datatype_of_array,
    load_fixtures,
)
from mmetools.model.config import (
    ONNX_PLATFORM,
    PYTHON_BACKEND,
    TORCHSCRIPT_PLATFORM,
    RepositoryModel,
    backend_of,
    is_ensemble,
)
from mmetools.model.folder import ModelFolder, missing_step_output_message, weight_filename
from mmetools.model.reference.pb_utils_standin import as_triton_array, installed_pb_utils
from mmetools.model.reference.steps import (
    Arrays,
    OnnxStep,
    PythonStep,
    Step,
    TensorDecl,
    TorchScriptStep,
    tensor_declarations,
)

logger = logging.getLogger(__name__)


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
        self._steps: list[tuple[_PlannedStep, Step]] = []
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
        declared_inputs = tensor_declarations(ensemble.config.input)
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
        for name, decl in tensor_declarations(ensemble.config.output).items():
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


def _load_step(planned: _PlannedStep, pb_utils: types.ModuleType) -> Step:
    model, version = planned.model, planned.version
    backend = backend_of(model.config)
    if is_ensemble(model.config):
        raise ModelRunError(
            f"{model.config_path}: nested ensemble '{model.name}' is not supported by the "
            "reference runner"
        )
    if backend == PYTHON_BACKEND:
        return PythonStep(model, version, pb_utils)
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
        return OnnxStep(model, version, weights)
    if model.config.platform == TORCHSCRIPT_PLATFORM or backend == "pytorch":
        return TorchScriptStep(model, version, weights)
    raise ModelRunError(
        f"{model.config_path}: step '{model.name}' uses backend '{backend or model.config.platform}',"
        " which the reference runner cannot run (python, onnxruntime_onnx, pytorch_libtorch)"
    )


def _check_tensor(
    array: npt.NDArray[Any],
    decl: TensorDecl,
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
