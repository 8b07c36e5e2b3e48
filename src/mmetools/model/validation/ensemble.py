"""Triton's rules for the steps of an ensemble: each step names a model of the repository, a
version it loads, a batch size no smaller than the ensemble's, and inputs/outputs that model has;
plus ensembles that contain themselves through nested ensembles.

The data flow between the steps is checked by ensemble_flow.Flow. The rules mirror
triton-inference-server/core ``ensemble_scheduler/ensemble_utils.cc`` (ValidateEnsembleConfig)
and ``model_repository_manager.cc`` (missing step models, CircularDependencyCheck).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mmetools.model.config import RepositoryModel
from mmetools.model.validation.ensemble_flow import Flow
from mmetools.model.validation.graph import cycles
from mmetools.model.validation.problems import WARNING, Problem, join
from mmetools.model.validation.repository import Repository, Step, served_versions


@dataclass
class EnsembleChecker:
    """Checks ensembles of one repository; remembers which (nested) ensembles are decoupled."""

    repository: Repository
    _decoupled: dict[str, bool] = field(default_factory=dict)
    _in_progress: set[str] = field(default_factory=set)

    def check(self, ensemble: RepositoryModel) -> list[Problem]:
        problems = list(self._step_problems(ensemble))
        if self.repository.steps[ensemble.name]:
            problems.extend(self._flow(ensemble).problems)
        return problems

    def is_decoupled(self, name: str) -> bool:
        """model_transaction_policy.decoupled; an ensemble is decoupled when a step of it is."""
        model = self.repository.models.get(name)
        if model is None:
            return False
        if not self.repository.is_ensemble(name):
            return bool(model.config.model_transaction_policy.decoupled)
        if name not in self._decoupled:
            self._resolve_nested(name)
        return self._decoupled.get(name, False)

    def _resolve_nested(self, name: str) -> None:
        """Decide the ensembles nested in ``name`` innermost first, without recursion: hundreds
        of nesting levels must not hit Python's recursion limit. In a cycle between ensembles
        (reported elsewhere) a member still being decided counts as not decoupled."""
        pending: list[tuple[str, bool]] = [(name, False)]
        while pending:
            current, nested_done = pending.pop()
            if current in self._decoupled:
                continue
            if nested_done:
                self._decoupled[current] = self._flow(self.repository.models[current]).decoupled
                self._in_progress.discard(current)
                continue
            if current in self._in_progress:
                continue
            self._in_progress.add(current)
            pending.append((current, True))
            for step in self.repository.steps[current]:
                nested = step.model_name
                if (
                    self.repository.is_ensemble(nested)
                    and nested in self.repository.models
                    and nested not in self._decoupled
                    and nested not in self._in_progress
                ):
                    pending.append((nested, False))

    def _flow(self, ensemble: RepositoryModel) -> Flow:
        flow = Flow(self.repository, ensemble, self.is_decoupled)
        flow.run()
        return flow

    # --- per step ---------------------------------------------------------------------------

    def _step_problems(self, ensemble: RepositoryModel) -> Iterator[Problem]:
        path = ensemble.config_path
        steps = self.repository.steps[ensemble.name]
        if ensemble.config.HasField("ensemble_scheduling") and not steps:
            yield Problem(path, "ensemble_scheduling has no step; an ensemble needs at least one")
        for step in steps:
            if not step.model_name:
                yield Problem(path, f"{step.label} has no model_name")
                continue
            if not step.input_entries:
                yield Problem(path, f"{step.label} has no input_map")
            if not step.output_entries:
                yield Problem(path, f"{step.label} has no output_map")
            yield from _repeated_key_problems(path, step)
            yield from self._step_model_problems(ensemble, step)

    def _step_model_problems(self, ensemble: RepositoryModel, step: Step) -> Iterator[Problem]:
        path = ensemble.config_path
        model = self.repository.models.get(step.model_name)
        if model is None:
            yield from self._missing_model_problems(ensemble, step)
            return
        yield from self._version_problem(ensemble, step, model)
        ensemble_batch = int(ensemble.config.max_batch_size)
        step_batch = int(model.config.max_batch_size)
        if 0 < step_batch < ensemble_batch:
            yield Problem(
                path,
                f"max_batch_size {ensemble_batch} of the ensemble is larger than "
                f"max_batch_size {step_batch} of {step.label}",
            )
        for kind, mapping, declared in (
            ("input", step.input_map, model.config.input),
            ("output", step.output_map, model.config.output),
        ):
            names = [str(io.name) for io in declared]
            for name, tensor in mapping.items():
                if name in names:
                    continue
                mapped = (
                    f"ensemble tensor '{tensor}' to input '{name}'"
                    if kind == "input"
                    else f"output '{name}' to ensemble tensor '{tensor}'"
                )
                yield Problem(
                    path,
                    f"{step.label} maps {mapped}, but {model.name} has no such {kind} "
                    f"({kind}s: {join(names) or 'none'})",
                )
        mapped_inputs = step.input_map
        for model_input in model.config.input:
            if model_input.name not in mapped_inputs and not model_input.optional:
                yield Problem(
                    path,
                    f"{step.label} leaves input '{model_input.name}' of {model.name} unmapped; "
                    "add it to input_map",
                )

    def _missing_model_problems(self, ensemble: RepositoryModel, step: Step) -> Iterator[Problem]:
        if step.model_name in self.repository.broken | self.repository.auto_completed:
            return  # the folder's own problem is reported already
        available = join(sorted(self.repository.models)) or "none"
        yield Problem(
            ensemble.config_path,
            f"{step.label}: model '{step.model_name}' is not in the repository "
            f"(models: {available})",
        )

    def _version_problem(
        self, ensemble: RepositoryModel, step: Step, model: RepositoryModel
    ) -> Iterator[Problem]:
        if step.model_version == -1 or not model.versions:
            return  # -1 is "latest"; a model without versions is reported on its own
        served = served_versions(model)
        if step.model_version in served:
            return
        if step.model_version in model.versions:
            reason = f"which its version_policy does not load (loaded: {join(map(str, served))})"
        else:
            reason = f"which does not exist (versions: {join(map(str, model.versions))})"
            if step.model_version == 0:
                # proto3 default: a step without model_version asks for version 0 (server #5474)
                reason += "; an omitted model_version means 0, use model_version: -1 for the latest"
        yield Problem(
            ensemble.config_path,
            f"{step.label} asks for version {step.model_version} of {model.name}, {reason}",
        )


def _repeated_key_problems(path: Path, step: Step) -> Iterator[Problem]:
    """Keys repeated in one map and outputs sharing a tensor.

    Protobuf keeps only the last value of a repeated key (Triton issue #4560) and Triton loads
    the ensemble, so that is a warning; two outputs writing one tensor Triton refuses.
    """
    for kind, entries in (("input_map", step.input_entries), ("output_map", step.output_entries)):
        values: dict[str, list[str]] = {}
        for key, value in entries:
            values.setdefault(key, []).append(value)
        side = "input" if kind == "input_map" else "output"
        for key, mapped in values.items():
            if len(mapped) > 1:
                shown = join(f"'{v}'" for v in mapped)
                yield Problem(
                    path,
                    f"{step.label}: {kind} lists model {side} '{key}' {len(mapped)} times "
                    f"({shown}); protobuf keeps only the last ('{mapped[-1]}') and Triton "
                    "silently ignores the others",
                    WARNING,
                )
    writers: dict[str, list[str]] = {}
    for model_output, tensor in step.output_map.items():
        writers.setdefault(tensor, []).append(model_output)
    for tensor, outputs in writers.items():
        if len(outputs) > 1:
            yield Problem(
                path,
                f"{step.label} maps outputs {join(repr(o) for o in outputs)} "
                f"to the same ensemble tensor '{tensor}'",
            )


def ensemble_cycle_problems(repository: Repository) -> Iterator[Problem]:
    """CircularDependencyCheck: ensembles that contain themselves through their steps."""
    edges = {
        name: sorted({s.model_name for s in steps if repository.is_ensemble(s.model_name)})
        for name, steps in repository.steps.items()
    }
    for cycle in cycles(edges):
        yield Problem(
            repository.models[cycle[0]].config_path,
            f"circular dependency between ensembles: {' -> '.join(cycle)}",
        )
