"""``mmetools test``: every fixture case of a model sent through its ensemble on a real Triton.

The served repository is the artifact's member list (:func:`mmetools.build.package.collect_members`):
the step folders and the ensemble with the ``1/`` the packager creates, nothing else. It is staged
into the server's repository folder as real folders holding symbolic links to the source files
(nothing copied; Python's ``__pycache__`` lands in the staging folder, not in the model folder).

One server serves many models: models whose Python steps need the same serving env share a
server; each model is staged, loaded (explicit model control), run, unloaded and unstaged in
turn. A server that dies is reported against the model it was running and replaced for the rest.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from mmetools.core.errors import MmetoolsError, TritonError
from mmetools.model.cases import CaseResult, FixtureCase, compare_case, load_fixtures
from mmetools.testing.memory import MemorySample, sample_process_tree
from mmetools.model.config import CONFIG_FILE, load_config
from mmetools.model.folder import (
    ENV_ARCHIVE,
    EXECUTION_ENV_KEY,
    ModelFolder,
    consumer_tensor,
    missing_step_output_message,
    model_folder,
    producer_of,
    weight_paths,
)
from mmetools.testing.serving_env import ServingEnv, ensure_serving_env, serving_env_problem
from mmetools.core.settings import Settings
from mmetools.testing.triton import LoadResult, TritonServer, resolve_mode
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

ReportCallback = Callable[["ModelReport"], None]


# ------------------------------------------------------------------------------------------------
# Staging a model folder into a server's repository


@dataclass(frozen=True)
class StagedModel:
    """A model folder's Triton models placed in a server repository."""

    repository: Path
    names: tuple[str, ...]  # every Triton model (steps and the ensemble)
    ensemble: str


def stage_repository(model: ModelFolder, destination: Path) -> StagedModel:
    """Place ``model``'s artifact members in ``destination``: folders are created, files are
    symbolic links to the source. A step whose config sets EXECUTION_ENV_PATH gets a staged
    config without that one parameter and no packed env: the source folder is tested with the
    local Python (the serving env); the packed env is built for the serving target's Python and
    is tested where that is emulated, through ``mmetools test --artifact``."""
    from mmetools.build.package import collect_members

    ensemble = model.ensemble().name
    members = collect_members(model, include_env=False)
    names = tuple(m.name for m in members if "/" not in m.name)
    clashing = [name for name in names if (destination / name).exists()]
    if clashing:
        raise TritonError(
            f"model '{model.name}': Triton models {', '.join(clashing)} are already in the "
            "server's repository (two models of this run use the same step names)"
        )
    staged = StagedModel(destination, names, ensemble)
    try:
        for member in members:
            target = destination / member.name
            if member.kind == "dir":
                target.mkdir()
            elif member.source is not None:
                if target.name == CONFIG_FILE and _needs_env_removed(member.source):
                    _write_config_without_env(member.source, target)
                else:
                    os.symlink(member.source.resolve(), target)
    except BaseException:
        unstage(staged)
        raise
    return staged


def _needs_env_removed(config_path: Path) -> bool:
    return EXECUTION_ENV_KEY in load_config(config_path).parameters


def _write_config_without_env(source: Path, target: Path) -> None:
    config = load_config(source)
    del config.parameters[EXECUTION_ENV_KEY]
    target.write_text(text_format.MessageToString(config), encoding="utf-8")
    logger.info(
        "%s: runs in the local serving env (%s is for the serving target: test --artifact)",
        source.parent.name,
        ENV_ARCHIVE,
    )


def with_source_paths(report: ModelReport, staged: str, source: str) -> ModelReport:
    """Messages name the model's files (``source`` prefix), not the temporary staged copies."""

    def fix(text: str) -> str:
        return text.replace(staged, source)

    return replace(
        report,
        error=fix(report.error) if report.error else report.error,
        log_lines=tuple(fix(line) for line in report.log_lines),
        results=tuple(replace(r, error=fix(r.error)) if r.error else r for r in report.results),
    )


def unstage(staged: StagedModel) -> None:
    for name in staged.names:
        remove_tree(staged.repository / name, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ModelReport:
    """The outcome for one model (source folder or artifact)."""

    name: str
    source: str
    results: tuple[CaseResult, ...] = ()
    load_seconds: float | None = None
    latencies: tuple[float, ...] = ()  # seconds per request
    error: str | None = None  # the model could not be tested (load failure, crash, bad fixture)
    log_lines: tuple[str, ...] = ()  # the Triton log lines that explain ``error``
    server_start_seconds: float | None = None
    not_run: tuple[str, ...] = ()  # cases skipped because the server died
    memory_before: MemorySample | None = None  # server + stubs, before and after the load
    memory_after: MemorySample | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed_cases(self) -> int:
        return sum(1 for r in self.results if not r.passed) + len(self.not_run)

    @property
    def failure_summary(self) -> str:
        """Why the model did not pass, in one line (a pipeline step's detail)."""
        if self.error:
            return self.error.splitlines()[0]
        if not self.results:
            return "no fixture cases ran"
        failed = [r.case.name for r in self.results if not r.passed]
        return f"{len(failed)} of {len(self.results)} case(s) failed: {', '.join(failed)}"

    def latency_percentile(self, percent: float) -> float | None:
        if not self.latencies:
            return None
        return float(np.percentile(np.array(self.latencies), percent, method="higher"))


@dataclass(frozen=True)
class RunResult:
    reports: tuple[ModelReport, ...]
    server_start_seconds: tuple[float, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return bool(self.reports) and all(report.passed for report in self.reports)


# ------------------------------------------------------------------------------------------------
# Running source model folders


@dataclass(frozen=True)
class _Prepared:
    model: ModelFolder
    cases: tuple[FixtureCase, ...]
    env: ServingEnv


def prepare_model(model: ModelFolder, settings: Settings) -> _Prepared | ModelReport:
    """Everything that can fail before a server is involved: the ensemble, the fixtures, the
    weight files, the serving env. A problem becomes the model's report."""
    source = str(model.path)
    try:
        model.ensemble()
        cases = tuple(load_fixtures(model))
        missing = [
            str(path)
            for step in model.repository().values()
            for path in weight_paths(step)
            if not path.is_file()
        ]
        if missing:
            return ModelReport(
                model.name,
                source,
                error=f"model '{model.name}': weight file{'s' if len(missing) > 1 else ''} "
                f"missing: {', '.join(missing)} (tracked by DVC: run `dvc pull`)",
            )
        env = ensure_serving_env(model.requirements_file, settings.cache_dir)
        problem = serving_env_problem(env, settings.target) if model.python_steps() else None
        if problem:
            target = settings.target
            return ModelReport(
                model.name,
                source,
                error=f"model '{model.name}': the serving env its Python steps run in here, from "
                f"{model.requirements_file}, fails the audit for target {target.image} (Python "
                f"{target.python_version}, glibc {target.glibc}); no Triton was started:\n"
                f"  {problem}\n(the same rule refuses the packed env in `mmetools inspect`)",
            )
    except MmetoolsError as e:
        return ModelReport(model.name, source, error=str(e))
    return _Prepared(model, cases, env)


# Triton blames the step *after* one that did not return a declared output.
_MISSING_INPUTS = re.compile(
    r"for model '(?P<model>[^']+)'\. Got input\(s\) \[[^\]]*\], "
    r"but missing required input\(s\) \[(?P<inputs>[^\]]*)\]"
)


def explain_inference_error(model: ModelFolder, message: str) -> str:
    """Put a step's missing output first: Triton reports it as the next step's missing input."""
    found = _MISSING_INPUTS.search(message)
    if found is None:
        return message
    explained = []
    try:
        for step_input in re.findall(r"'([^']+)'", found["inputs"]):
            tensor = consumer_tensor(model, found["model"], step_input)
            producer = producer_of(model, tensor) if tensor else None
            if producer is not None:
                explained.append(
                    missing_step_output_message(producer[0], producer[1], tensor or "")
                )
    except MmetoolsError:
        return message  # the configs do not parse: validate reports that
    return "\n".join([*explained, f"(Triton: {message})"]) if explained else message


def _case_inputs(case: FixtureCase) -> tuple[dict[str, Any], dict[str, str]]:
    return case.input_arrays(), {t.name: t.datatype for t in case.inputs}


def run_cases(
    server: TritonServer,
    model_name: str,
    source: str,
    ensemble: str,
    cases: Sequence[FixtureCase],
    log_names: Sequence[str],
    infer: Callable[[FixtureCase], dict[str, Any]],
    load: Callable[[], LoadResult],
    repeat: int = 1,
) -> ModelReport:
    """Load, run every case (``repeat`` times, for latency numbers), compare: one report."""
    since = server.log_offset()
    memory_before = _memory(server)
    loaded = load()
    memory_after = _memory(server) if loaded.error is None else None
    if loaded.error is not None:
        return ModelReport(
            model_name,
            source,
            error=loaded.error,
            log_lines=loaded.log_lines,
            server_start_seconds=server.start_seconds,
        )
    load_seconds = loaded.seconds
    results: list[CaseResult] = []
    latencies: list[float] = []
    for index, case in enumerate(cases):
        try:
            outputs: dict[str, Any] = {}
            for _ in range(max(1, repeat)):
                begin = time.perf_counter()
                outputs = infer(case)
                latencies.append(time.perf_counter() - begin)
        except TritonError as e:
            if server.died():
                return ModelReport(
                    model_name,
                    source,
                    tuple(results),
                    load_seconds,
                    tuple(latencies),
                    error=f"Triton {server.exit_description()} while running case "
                    f"'{case.name}' of model '{model_name}'",
                    log_lines=tuple(server.log_excerpt([ensemble, *log_names], since)),
                    server_start_seconds=server.start_seconds,
                    not_run=tuple(c.name for c in cases[index + 1 :]),
                )
            results.append(CaseResult(case, (), error=str(e)))
            continue
        results.append(compare_case(case, outputs))
    return ModelReport(
        model_name,
        source,
        tuple(results),
        load_seconds,
        tuple(latencies),
        server_start_seconds=server.start_seconds,
        memory_before=memory_before,
        memory_after=memory_after,
    )


def _memory(server: TritonServer) -> MemorySample | None:
    """The server's and its stubs' memory; None in docker mode (the process is docker's client)."""
    if server.pid is None or server.mode == "docker":
        return None
    try:
        return sample_process_tree(server.pid)
    except Exception as e:  # psutil.NoSuchProcess: the server died; the load reports that
        logger.debug("no memory sample: %s", e)
        return None


def run_model_on_server(server: TritonServer, prepared: _Prepared, repeat: int = 1) -> ModelReport:
    """Stage, load, run and unload one prepared model on a running KServe-frontend server."""
    model = prepared.model
    try:
        staged = stage_repository(model, server.repository)
    except MmetoolsError as e:
        return ModelReport(model.name, str(model.path), error=str(e))

    def infer(case: FixtureCase) -> dict[str, Any]:
        arrays, datatypes = _case_inputs(case)
        outputs = [e.name for e in case.expected]
        try:
            return server.infer(staged.ensemble, arrays, outputs=outputs, datatypes=datatypes)
        except TritonError as e:
            raise TritonError(explain_inference_error(model, str(e))) from e

    try:
        report = run_cases(
            server,
            model.name,
            str(model.path),
            staged.ensemble,
            prepared.cases,
            staged.names,
            infer,
            lambda: server.try_load(staged.ensemble, staged.names),
            repeat,
        )
        return with_source_paths(report, f"{staged.repository}/", f"{model.path}/")
    finally:
        server.unload(staged.ensemble)
        for name in staged.names:  # steps that loaded while the ensemble failed to
            if name != staged.ensemble:
                server.unload(name, dependents=False)
        unstage(staged)


def run_groups(
    groups: dict[str, list[Any]],
    make_server: Callable[[Any], TritonServer],
    run_one: Callable[[TritonServer, Any], ModelReport],
    fail: Callable[[Any, str], ModelReport],
    on_report: ReportCallback | None,
) -> tuple[list[ModelReport], list[float]]:
    """One server per group, reused for each item; a dead server is replaced for the rest."""
    reports: list[ModelReport] = []
    starts: list[float] = []

    def emit(report: ModelReport) -> None:
        reports.append(report)
        if on_report is not None:
            on_report(report)

    for items in groups.values():
        server: TritonServer | None = None
        try:
            for item in items:
                if server is None or not server.alive():
                    if server is not None:
                        server.stop()
                    server = make_server(item)
                    try:
                        server.start()
                    except TritonError as e:
                        emit(fail(item, f"Triton did not start: {e}"))
                        server = None
                        continue
                    assert server.start_seconds is not None
                    starts.append(server.start_seconds)
                emit(run_one(server, item))
        finally:
            if server is not None:
                server.stop()
    return reports, starts


def run_models(
    paths: Sequence[Path],
    settings: Settings,
    *,
    mode: str | None = None,
    image: str | None = None,
    repeat: int = 1,
    on_report: ReportCallback | None = None,
) -> RunResult:
    """Test each model folder's fixtures on a real Triton; reports come in the given order."""
    folders = [model_folder(path) for path in paths]
    chosen = resolve_mode(settings.triton.mode, mode, image)
    prepared_or_reports = [prepare_model(folder, settings) for folder in folders]
    early = [r for r in prepared_or_reports if isinstance(r, ModelReport)]
    for report in early:
        if on_report is not None:
            on_report(report)
    groups: dict[str, list[_Prepared]] = {}
    for item in prepared_or_reports:
        if isinstance(item, _Prepared):
            groups.setdefault(item.env.key, []).append(item)

    def make_server(item: _Prepared) -> TritonServer:
        return TritonServer(
            mode=chosen,
            python_env=item.env,
            cache_dir=settings.cache_dir,
            image=image or settings.triton.image or settings.target_settings.image,
            mounts=[each.model.path.resolve() for group in groups.values() for each in group],
            requirements=(
                item.model.requirements_file if item.model.requirements_file.is_file() else None
            ),
        )

    def fail(item: _Prepared, message: str) -> ModelReport:
        return ModelReport(item.model.name, str(item.model.path), error=message)

    reports, starts = run_groups(
        groups, make_server, lambda s, i: run_model_on_server(s, i, repeat), fail, on_report
    )
    by_source = {r.source: r for r in [*early, *reports]}
    ordered = tuple(
        by_source[str(folder.path)] for folder in folders if str(folder.path) in by_source
    )
    return RunResult(ordered, tuple(starts))
