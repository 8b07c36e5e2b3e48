"""The model pipeline, defined once: validate -> fetch -> env -> test -> package -> artifact test.

Each step takes the value the previous one returned, so no step can run on a model the one before
refused: a wiring mistake stops at validation, before any Triton log. ``mmetools build``, the
Pants rules and ``ci/pipeline`` are front-ends of ``build``; publishing (``mmetools publish``)
then requires the evidence the last step writes.

``build`` first removes what an earlier build of each model version left in ``out``, packages
into a private folder inside ``out`` and moves an artifact's four files into ``out`` only after
its artifact test passed, so ``out`` never holds an artifact that did not pass in this run (or
half of one); the evidence is signed with the evidence key (release/evidence_key.py). Steps that start a Triton server run for all models at once (one server per
serving env), every other step per model; a model that fails stops there, the others go on.
``package_model`` (``mmetools package``) is the same route without the Triton tests: validate ->
fetch -> env -> package, each step's module called once (weights are fetched once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmetools.build.env import EnvBackend, PackedEnv, Progress, prepare_env
from mmetools.build.package import Artifact, write_artifact
from mmetools.core.atomic import move_set_into_place, owned_temp_folder, remove_orphaned_temps
from mmetools.core.errors import MmetoolsError, UsageError, ValidationFailed
from mmetools.release.evidence import (
    ARTIFACT_TEST,
    SOURCE_TEST,
    Evidence,
    RecordedTest,
    evidence_path,
    write_evidence,
)
from mmetools.release.evidence_recording import new_run, record_of_report, signing_key
from mmetools.release.evidence_recording import tested_image, tested_target
from mmetools.testing.source_test import ModelReport, run_models
from mmetools.build.files import ArtifactFiles, LocalFiles
from mmetools.model.dvc import ensure_weights
from mmetools.model.folder import ModelFolder, ModelRef
from mmetools.model.validation import validate_model
from mmetools.build.parallel_gzip import DEFAULT_LEVEL
from mmetools.testing.artifact_test import run_artifacts
from mmetools.core.settings import Settings
from mmetools.testing.triton import resolve_mode
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

StepName = Literal["validate", "fetch", "env", "test", "package", "artifact"]
STEP_NAMES: tuple[StepName, ...] = ("validate", "fetch", "env", "test", "package", "artifact")
# The steps a build may leave out (BuildOptions.skip): the Pants rules test the model folder in a
# cached process of its own, so their package process builds without it.
SKIPPABLE_STEPS: tuple[StepName, ...] = ("test",)
# ``build --out`` packages into an owned temp folder of this name (``.build.tmp-<pid>-<random>``).
STAGING_NAME = "build"
Status = Literal["passed", "failed", "skipped"]


# --------------------------------------------------------------------------------------------
# The values passed from step to step


@dataclass(frozen=True)
class ValidModel:
    """A model folder that passed static validation; loaded once (its configs are parsed once
    per state of the files, by the stat-keyed memo of model_config)."""

    folder: ModelFolder
    ref: ModelRef

    @property
    def name(self) -> str:
        return self.ref.name


@dataclass(frozen=True)
class FetchedModel:
    model: ValidModel
    fetched: int  # weight files pulled through DVC in this run


@dataclass(frozen=True)
class ReadyModel:
    """Weights present and the env packed into its Python steps: what Triton loads."""

    model: ValidModel
    env: PackedEnv | None


@dataclass(frozen=True)
class TestedModel:
    ready: ReadyModel
    source_test: RecordedTest | None  # None: the test step was skipped


@dataclass(frozen=True)
class PackagedModel:
    tested: TestedModel
    artifact: Artifact  # in the private staging folder until its artifact test passed


@dataclass(frozen=True)
class BuiltArtifact:
    """An artifact in ``out`` whose evidence says it passed both tests."""

    ref: ModelRef
    path: Path
    sha256: str
    manifest_path: Path
    sha256_path: Path
    evidence_path: Path
    evidence: Evidence

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path, self.sha256_path, self.manifest_path, self.evidence_path)


@dataclass(frozen=True)
class StepOutcome:
    model: str
    step: StepName
    status: Status
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class TritonOptions:
    mode: str | None = None
    image: str | None = None
    repeat: int = 1


@dataclass(frozen=True)
class BuildOptions:
    with_env: bool = True
    level: int = DEFAULT_LEVEL
    threads: int | None = None
    triton: TritonOptions = TritonOptions()
    skip: frozenset[str] = frozenset()  # names of SKIPPABLE_STEPS to leave out


@dataclass(frozen=True)
class BuildReport:
    requested: tuple[str, ...]  # model names, in the order given
    outcomes: tuple[StepOutcome, ...]
    artifacts: tuple[BuiltArtifact, ...]
    reports: tuple[ModelReport, ...]  # Triton test reports (source and artifact), for JUnit

    @property
    def failed_models(self) -> tuple[str, ...]:
        failed = {o.model for o in self.outcomes if o.status == "failed"}
        return tuple(name for name in self.requested if name in failed)

    @property
    def passed(self) -> bool:
        # Zero artifacts is never a pass: a green build must have built something.
        return not self.failed_models and len(self.artifacts) == len(self.requested) > 0


StepCallback = Callable[[StepOutcome], None]


class _Run:
    """Bookkeeping of one build: step outcomes and timing."""

    def __init__(self, on_step: StepCallback | None) -> None:
        self.outcomes: list[StepOutcome] = []
        self.on_step = on_step

    def record(
        self, model: str, step: StepName, status: Status, seconds: float, detail: str = ""
    ) -> None:
        outcome = StepOutcome(model, step, status, seconds, detail)
        self.outcomes.append(outcome)
        if self.on_step is not None:
            self.on_step(outcome)

    def skip_rest(self, model: str, after: StepName) -> None:
        for step in STEP_NAMES[STEP_NAMES.index(after) + 1 :]:
            self.record(model, step, "skipped", 0.0, f"{after} failed")


# --------------------------------------------------------------------------------------------
# The steps


def validate(folder: ModelFolder) -> ValidModel:
    """Static validation first: ValidationFailed with every error."""
    validate_model(folder)
    return ValidModel(folder, folder.ref())


def fetch(model: ValidModel) -> FetchedModel:
    """DVC-tracked weights pulled when absent (once), every inferencer's weight file present."""
    before = time.perf_counter()
    pulled = ensure_weights(model.folder)
    logger.debug("%s: weights checked in %.2f s", model.name, time.perf_counter() - before)
    return FetchedModel(model, len(pulled))


def env(fetched: FetchedModel, settings: Settings, *, with_env: bool = True) -> ReadyModel:
    packed = prepare_env(fetched.model.folder, settings, with_env=with_env)
    return ReadyModel(fetched.model, packed)


def package(
    folder: ModelFolder,
    packed: PackedEnv | None,
    out_dir: Path,
    settings: Settings,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Artifact:
    """The artifact of a ready model folder (``packed``: the env in its Python steps, if any)."""
    env_hash, backend = (packed.env_hash, packed.backend) if packed is not None else (None, None)
    return write_artifact(folder, out_dir, settings, env_hash=env_hash, env_backend=backend,
                          level=level, threads=threads, progress=progress)  # fmt: skip


def package_model(
    model: ModelFolder,
    out_dir: Path,
    settings: Settings,
    *,
    with_env: bool = True,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    validate: bool = True,
    fetch_weights: bool = True,
    progress: Progress | None = None,
    env_backend: EnvBackend | None = None,
) -> Artifact:
    """``mmetools package``: validate -> fetch -> env -> package for one model, without the
    Triton tests; the artifact and its sidecars are written straight into ``out_dir``."""

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    model.ref()  # a bad model_version.txt is the first thing to say
    if validate:
        report("validating")
        validate_model(model)
    if fetch_weights:
        report("checking weights")
        ensure_weights(model)
    packed = prepare_env(model, settings, with_env=with_env, progress=progress, backend=env_backend)
    return package(model, packed, out_dir, settings, level, threads, progress)


# --------------------------------------------------------------------------------------------
# The whole build


def build(
    folders: Sequence[ModelFolder],
    out: Path,
    settings: Settings,
    options: BuildOptions = BuildOptions(),
    *,
    on_step: StepCallback | None = None,
    on_report: Callable[[ModelReport], None] | None = None,
) -> BuildReport:
    """Run every step for each model; returns what passed, what failed and the artifacts in
    ``out`` (each with its .sha256, manifest and evidence)."""
    if not folders:
        raise UsageError("no model folders to build: give models/<name> (e.g. models/*)")
    names = [folder.name for folder in folders]
    if len(set(names)) != len(names):
        raise UsageError(f"the same model is given twice: {', '.join(sorted(names))}")
    unskippable = sorted(options.skip - set(SKIPPABLE_STEPS))
    if unskippable:
        raise UsageError(
            f"cannot skip step(s) {', '.join(unskippable)}: only {', '.join(SKIPPABLE_STEPS)} "
            "can be skipped (the other steps feed the artifact)"
        )
    signing_key(settings)  # a bad evidence key stops the build before any step
    for folder in folders:
        _remove_previous_build(folder, out)
    run = _Run(on_step)
    mode = resolve_mode(settings.triton.mode, options.triton.mode, options.triton.image)
    image = tested_image(settings, options.triton.image)

    ready: list[ReadyModel] = []
    for folder in folders:
        value = _per_model_steps(folder, settings, options, run)
        if value is not None:
            ready.append(value)

    reports: list[ModelReport] = []
    tested = _test_step(ready, settings, options, mode, image, run, reports, on_report)

    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temps(out / STAGING_NAME)  # a killed build's staging folder
        staging = owned_temp_folder(out / STAGING_NAME)
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder: {e.strerror or e}") from e
    try:
        packaged = _package_step(tested, staging, settings, options, run)
        built = _artifact_step(
            packaged, out, settings, options, mode, image, run, reports, on_report
        )
    finally:
        remove_tree(staging, ignore_errors=True)
    order = {name: index for index, name in enumerate(names)}
    return BuildReport(
        requested=tuple(names),
        outcomes=tuple(
            sorted(run.outcomes, key=lambda o: (order[o.model], STEP_NAMES.index(o.step)))
        ),
        artifacts=tuple(sorted(built, key=lambda a: order[a.ref.name])),
        reports=tuple(reports),
    )


def _per_model_steps(
    folder: ModelFolder, settings: Settings, options: BuildOptions, run: _Run
) -> ReadyModel | None:
    """validate -> fetch -> env for one model; None (and the rest skipped) when one fails."""
    name = folder.name
    step: StepName = "validate"
    started = time.perf_counter()
    try:
        model = validate(folder)
        run.record(name, "validate", "passed", time.perf_counter() - started)
        step, started = "fetch", time.perf_counter()
        fetched = fetch(model)
        detail = f"pulled {fetched.fetched} file(s)" if fetched.fetched else "up to date"
        run.record(name, "fetch", "passed", time.perf_counter() - started, detail)
        step, started = "env", time.perf_counter()
        ready = env(fetched, settings, with_env=options.with_env)
        packed = ready.env
        detail = (
            "no env"
            if packed is None
            else (f"{packed.env_hash[:12]} {'from the cache' if packed.cached else 'built'}")
        )
        run.record(name, "env", "passed", time.perf_counter() - started, detail)
        return ready
    except ValidationFailed as e:
        run.record(name, step, "failed", time.perf_counter() - started, "\n".join(e.problems))
    except MmetoolsError as e:
        run.record(name, step, "failed", time.perf_counter() - started, str(e))
    run.skip_rest(name, step)
    return None


def _test_step(
    ready: list[ReadyModel],
    settings: Settings,
    options: BuildOptions,
    mode: str,
    image: str,
    run: _Run,
    reports: list[ModelReport],
    on_report: Callable[[ModelReport], None] | None,
) -> list[TestedModel]:
    if not ready:
        return []
    if "test" in options.skip:
        for item in ready:
            run.record(item.model.name, "test", "skipped", 0.0, "not requested")
        return [TestedModel(item, None) for item in ready]
    started = time.perf_counter()
    result = run_models(
        [item.model.folder.path for item in ready],
        settings,
        mode=options.triton.mode,
        image=options.triton.image,
        repeat=options.triton.repeat,
        on_report=on_report,
    )
    seconds = (time.perf_counter() - started) / len(ready)  # one server run shared by the models
    by_name = {report.name: report for report in result.reports}
    tested = []
    for item in ready:
        report = by_name.get(item.model.name)
        if report is None:  # pragma: no cover - run_models reports every model it is given
            report = ModelReport(item.model.name, str(item.model.folder.path), error="not run")
        reports.append(report)
        if report.passed:
            cases = len(report.results)
            run.record(item.model.name, "test", "passed", seconds, f"{cases} case(s) on Triton")
            tested.append(
                TestedModel(item, record_of_report(SOURCE_TEST, report, settings, mode, image))
            )
        else:
            run.record(item.model.name, "test", "failed", seconds, report.failure_summary)
            run.skip_rest(item.model.name, "test")
    return tested


def _package_step(
    tested: list[TestedModel], staging: Path, settings: Settings, options: BuildOptions, run: _Run
) -> list[PackagedModel]:
    packaged = []
    for item in tested:
        model = item.ready.model
        started = time.perf_counter()
        folder = staging / model.name  # one folder per model: its files are moved as a set
        try:
            folder.mkdir()
            artifact = package(
                model.folder, item.ready.env, folder, settings, options.level, options.threads
            )
        except MmetoolsError as e:
            run.record(model.name, "package", "failed", time.perf_counter() - started, str(e))
            run.skip_rest(model.name, "package")
            continue
        detail = f"{artifact.size / 1e6:.1f} MB, sha256 {artifact.sha256[:12]}"
        run.record(model.name, "package", "passed", time.perf_counter() - started, detail)
        packaged.append(PackagedModel(item, artifact))
    return packaged


def _artifact_step(
    packaged: list[PackagedModel],
    out: Path,
    settings: Settings,
    options: BuildOptions,
    mode: str,
    image: str,
    run: _Run,
    reports: list[ModelReport],
    on_report: Callable[[ModelReport], None] | None,
) -> list[BuiltArtifact]:
    if not packaged:
        return []
    started = time.perf_counter()
    result = run_artifacts(
        [item.artifact.path for item in packaged],
        settings,
        mode=options.triton.mode,
        image=options.triton.image,
        repeat=options.triton.repeat,
        on_report=on_report,
    )
    seconds = (time.perf_counter() - started) / len(packaged)
    by_source = {report.source: report for report in result.reports}
    built = []
    for item in packaged:
        name = item.tested.ready.model.name
        report = by_source.get(str(item.artifact.path))
        if report is None:  # pragma: no cover - run_artifacts reports every artifact
            report = ModelReport(name, str(item.artifact.path), error="not run")
        reports.append(report)
        if not report.passed:
            run.record(name, "artifact", "failed", seconds, report.failure_summary)
            continue
        source = item.tested.source_test
        tested = record_of_report(ARTIFACT_TEST, report, settings, mode, image)
        tests = (tested,) if source is None else (source, tested)
        unsigned = Evidence(item.artifact.path.name, item.artifact.sha256, tests,
                            tested_target(settings), new_run(item.tested.ready.model.folder.source_dir))  # fmt: skip
        evidence = write_evidence(
            evidence_path(item.artifact.path), unsigned, signing_key(settings)
        )
        built.append(_move_into(item.artifact, evidence, out, item.tested.ready.model.ref))
        run.record(name, "artifact", "passed", seconds, f"{len(report.results)} case(s) via MME")
    return built


def _remove_previous_build(folder: ModelFolder, out: Path) -> None:
    """Before any step: a model that now fails leaves no earlier build and evidence in out."""
    try:
        files = ArtifactFiles.of(folder.ref()).local(out)
    except MmetoolsError:
        return  # no version to name: validation reports it
    try:
        logger.info("%s: removed the previous build's %s", folder.name, files.remove() or "-")
    except OSError as e:
        raise UsageError(f"{out}: cannot remove {folder.name}'s previous build: {e}") from e


def _move_into(artifact: Artifact, evidence: Evidence, out: Path, ref: ModelRef) -> BuiltArtifact:
    """Move the four files into ``out`` as one set (see ``move_set_into_place``): an artifact
    under its final name always has its own sidecars, never those of another build."""
    sources, targets = LocalFiles(artifact.path), ArtifactFiles.of(ref).local(out)
    move_set_into_place(
        dict(zip(sources.sidecars, targets.sidecars)), (sources.tarball, targets.tarball)
    )
    return BuiltArtifact(
        ref=ref,
        path=targets.tarball,
        sha256=artifact.sha256,
        manifest_path=targets.manifest,
        sha256_path=targets.sha256,
        evidence_path=targets.evidence,
        evidence=evidence,
    )
