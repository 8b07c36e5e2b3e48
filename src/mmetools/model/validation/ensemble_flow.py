"""The data flow of one ensemble: which step writes and which reads each ensemble tensor, whether
their data types and shapes agree, an order the steps can run in (cycles among steps), and which
decoupled models the tensors come from.

The rules mirror triton-inference-server/core ``ensemble_scheduler/ensemble_utils.cc``
(ValidateEnsembleConfig, ValidateTensorMapping, ValidateTensorConsistency) and
``model_config_utils.cc`` (BuildEnsembleGraph).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mmetools.model.config import RepositoryModel, dtype_name
from mmetools.model.validation.graph import cycles
from mmetools.model.validation.problems import WARNING, Problem
from mmetools.model.validation.repository import Repository, Step
from mmetools.model.validation.tensors import Tensor, needs_batch_one, shape_mismatch


@dataclass(frozen=True)
class Producer:
    step: Step | None  # None: an ensemble input
    output: str  # the step model's output name, or the ensemble input name


def _named(declared: Iterable[Any], name: str) -> Any | None:
    return next((io for io in declared if io.name == name), None)


class Flow:
    """The data flow of one ensemble: producers, consumers, run order, decoupled origins.

    ``is_decoupled`` answers for a step's model; for a nested ensemble it needs that ensemble's
    own flow, which is why the caller (ensemble.EnsembleChecker) provides and memoizes it.
    """

    def __init__(
        self,
        repository: Repository,
        ensemble: RepositoryModel,
        is_decoupled: Callable[[str], bool],
    ) -> None:
        self.repository = repository
        self.ensemble = ensemble
        self.is_decoupled = is_decoupled
        self.path = ensemble.config_path
        # Steps without model_name still wire tensors: keeping them avoids follow-on reports.
        self.steps = list(repository.steps[ensemble.name])
        self.problems: list[Problem] = []
        self.decoupled = False
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, list[tuple[Step, str]]] = {}
        self.output_names = [str(o.name) for o in ensemble.config.output]
        self.batching = int(ensemble.config.max_batch_size) > 0

    def _error(self, message: str) -> None:
        self.problems.append(Problem(self.path, message))

    def run(self) -> None:
        self._link()
        self._check_connections()
        self._check_tensor_types()
        order = self._run_order()
        self._check_decoupled(order)

    def _link(self) -> None:
        for ensemble_input in self.ensemble.config.input:
            self.producers.setdefault(str(ensemble_input.name), Producer(None, ensemble_input.name))
        for step in self.steps:
            for model_output, tensor in step.output_map.items():
                previous = self.producers.get(tensor)
                if previous is None:
                    self.producers[tensor] = Producer(step, model_output)
                elif previous.step is None:
                    self._error(
                        f"{step.label} writes ensemble tensor '{tensor}', which is an ensemble "
                        "input; a tensor can have only one producer"
                    )
                elif previous.step is not step:
                    self._error(
                        f"ensemble tensor '{tensor}' is written by both {previous.step.label} "
                        f"and {step.label}; a tensor can appear in only one output_map"
                    )
            for model_input, tensor in step.input_map.items():
                self.consumers.setdefault(tensor, []).append((step, model_input))

    def _check_connections(self) -> None:
        for ensemble_input in self.ensemble.config.input:
            if ensemble_input.name not in self.consumers:
                self._error(f"ensemble input '{ensemble_input.name}' is not used by any step")
        for name in self.output_names:
            if name not in self.producers:
                self._error(
                    f"ensemble output '{name}' is not written by any step "
                    f"(no output_map maps to '{name}')"
                )
        for step in self.steps:
            for model_input, tensor in step.input_map.items():
                if tensor not in self.producers:
                    self._error(
                        f"{step.label} reads ensemble tensor '{tensor}' for input "
                        f"'{model_input}', but no step writes '{tensor}' and it is not an "
                        "ensemble input"
                    )
        for tensor, producer in self.producers.items():
            if producer.step is None or tensor in self.consumers or tensor in self.output_names:
                continue
            self._error(
                f"ensemble tensor '{tensor}', written by {producer.step.label} from its output "
                f"'{producer.output}', is not used by any step or ensemble output"
            )

    # --- data types and shapes --------------------------------------------------------------

    def _producer_tensor(self, tensor: str) -> Tensor | None:
        producer = self.producers.get(tensor)
        if producer is None:
            return None
        if producer.step is None:
            ensemble_input = _named(self.ensemble.config.input, tensor)
            if ensemble_input is None:
                return None
            return self._ensemble_tensor(ensemble_input, f"ensemble input '{tensor}'")
        return self._step_tensor(producer.step, producer.output, outputs=True)

    def _ensemble_tensor(self, io: Any, origin: str) -> Tensor:
        return Tensor.declared(io, self.batching, origin, use_reshape=True)

    def _step_tensor(self, step: Step, name: str, outputs: bool) -> Tensor | None:
        model = self.repository.models.get(step.model_name)
        if model is None:
            return None
        io = _named(model.config.output if outputs else model.config.input, name)
        if io is None:
            return None
        kind = "output" if outputs else "input"
        batching = int(model.config.max_batch_size) > 0
        return Tensor.declared(io, batching, f"{kind} '{name}' of {step.label}", use_reshape=False)

    def _check_tensor_types(self) -> None:
        for step in self.steps:
            for model_input, tensor in step.input_map.items():
                produced = self._producer_tensor(tensor)
                expected = self._step_tensor(step, model_input, outputs=False)
                if produced is None or expected is None:
                    continue
                lead = (
                    f"{step.label} maps ensemble tensor '{tensor}' to input '{model_input}' "
                    f"of {step.model_name}, which expects"
                )
                self._compare(lead, f"'{tensor}' is", f"'{tensor}' has shape", produced, expected)
        for output in self.ensemble.config.output:
            producer = self.producers.get(str(output.name))
            if producer is None or producer.step is None:
                continue
            produced = self._step_tensor(producer.step, producer.output, outputs=True)
            if produced is None:
                continue
            declared = self._ensemble_tensor(output, f"ensemble output '{output.name}'")
            step = producer.step
            lead = (
                f"{step.label} maps output '{producer.output}' of {step.model_name} to ensemble "
                f"output '{output.name}', which the ensemble declares as"
            )
            self._compare(
                lead,
                f"{step.model_name} produces",
                f"{step.model_name} produces shape",
                produced,
                declared,
                with_origin=False,
            )

    def _compare(
        self,
        lead: str,
        actual_type: str,
        actual_shape: str,
        produced: Tensor,
        expected: Tensor,
        with_origin: bool = True,
    ) -> None:
        origin = f" ({produced.origin})" if with_origin else ""
        if produced.data_type != expected.data_type:
            self._error(
                f"{lead} {dtype_name(expected.data_type)} but {actual_type} "
                f"{dtype_name(produced.data_type)}{origin}"
            )
        elif shape_mismatch(produced, expected):
            full = produced.batching != expected.batching
            self._error(
                f"{lead} shape {expected.shape(full)} but {actual_shape} "
                f"{produced.shape(full)}{origin}"
            )
        elif needs_batch_one(produced, expected) and int(self.ensemble.config.max_batch_size) > 1:
            self.problems.append(
                Problem(
                    self.path,
                    f"{lead} shape {expected.shape(True)} but {actual_shape} "
                    f"{produced.shape(True)}{origin}; Triton loads this, but between a batching "
                    "and a non-batching model it reshapes only batch-1 tensors, so requests "
                    f"with a batch above 1 (max_batch_size is "
                    f"{self.ensemble.config.max_batch_size}) fail",
                    WARNING,
                )
            )

    # --- order, cycles, decoupled models ----------------------------------------------------

    def _run_order(self) -> list[Step]:
        """Steps in an order Triton can run them; reports cycles among the steps left over."""
        ready = {str(i.name) for i in self.ensemble.config.input}
        order: list[Step] = []
        pending = list(self.steps)
        progressed = True
        while progressed:
            progressed = False
            for step in list(pending):
                if all(tensor in ready for tensor in step.input_map.values()):
                    order.append(step)
                    pending.remove(step)
                    ready.update(step.output_map.values())
                    progressed = True
        # Steps waiting on a tensor nobody writes are reported already; the others wait on a cycle.
        blocked = [s for s in pending if all(t in self.producers for t in s.input_map.values())]
        for cycle in _step_cycles(blocked, self.producers):
            names = " -> ".join(s.label for s in cycle)
            self._error(f"steps form a cycle, so none of them can run: {names}")
        return order

    def _check_decoupled(self, order: list[Step]) -> None:
        """ValidateEnsembleConfig: a step's inputs must not come from different decoupled models."""
        labels = {str(i.name): 0 for i in self.ensemble.config.input}
        origins = {0: "the ensemble request"}
        for step in order:
            sources = {
                tensor: labels[tensor] for tensor in step.input_map.values() if tensor in labels
            }
            if len(set(sources.values())) > 1:
                self._error(
                    f"{step.label} receives inputs originated from different decoupled models: "
                    + _origins_text(sources, origins)
                )
            label = min(sources.values(), default=0)
            if self.is_decoupled(step.model_name):
                label = len(origins)
                origins[label] = f"decoupled {step.label}"
                self.decoupled = True
            for tensor in step.output_map.values():
                labels.setdefault(tensor, label)
        outputs = {name: labels[name] for name in self.output_names if name in labels}
        if len(set(outputs.values())) > 1:
            self._error(
                "ensemble outputs originated from different decoupled models: "
                + _origins_text(outputs, origins)
            )


def _origins_text(sources: dict[str, int], origins: dict[int, str]) -> str:
    return ", ".join(f"'{tensor}' from {origins[label]}" for tensor, label in sources.items())


def _step_cycles(steps: list[Step], producers: dict[str, Producer]) -> list[list[Step]]:
    """One cycle (first step repeated at the end) per strongly connected group of ``steps``."""
    by_number = {s.number: s for s in steps}
    edges: dict[int, list[int]] = {s.number: [] for s in steps}
    for step in steps:
        for tensor in step.input_map.values():
            producer = producers[tensor].step
            if producer is not None and producer.number in by_number:
                edges[producer.number].append(step.number)
    return [[by_number[n] for n in cycle] for cycle in cycles(edges)]
