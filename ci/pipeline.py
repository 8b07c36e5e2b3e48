"""The CI pipeline of the model monorepo: what runs on every push (see `ci/pipeline --help`).

This script only selects models and reports; the pipeline itself is `mmetools build`
(src/mmetools/pipeline.py), the same one every route runs. For the models changed since the merge
base (every model with --all), in this order:
  1. code quality: black and mypy through Pants (`./pants lint check`), once for the repository
  2. build: `mmetools build models/<name> --out dist/runs/<run>/`: validate, fetch weights, pack
     the env, test the folder on Triton, package, test the artifact through SageMaker MME
     emulation; it leaves the artifact, its .sha256, manifest and test evidence
  3. diff: `mmetools diff` of the artifact against the highest published version below it
     (its Markdown, JUnit XML and JSON reports in dist/reports/); over a threshold the model
     fails here and is not published; the first version is skipped with the report's note
  4. publish: exactly the files step 2 wrote in this run's folder, to staging on any branch and
     to production on the production branch (`mmetools publish`, which requires the evidence)
  5. smoke: on a branch, `mmetools smoke staging <artifact>` runs its fixtures on the staging
     endpoint; on the production branch, `mmetools smoke production <artifact> --warm` loads it
     on production with one call and reports the first-call latency; skipped with a line saying
     so when mmetools.toml declares no endpoint for that stage (docs/endpoints.md)
A model whose step fails runs no further step; nothing is published when code quality fails.
Every run packages into its own new folder dist/runs/<run id>-<random>/, so an artifact left in
dist/ by an earlier run is never published. A model folder without a `triton_model` target, or a
run that selected models and built none, fails.
While a step runs: a live line on a terminal, else a heartbeat line every --heartbeat seconds.
One line per step as it ends, a summary table per model at the end (the build's own steps from
its JUnit report), the URIs of every published object per model (or why none), JUnit XML in
dist/reports/, and a non-zero exit naming each failed model and step.

Which models changed: Pants' `--changed-since=<base> --changed-dependents=transitive`, so a
change to the toolkit every model depends on (src/mmetools, mmetools.toml, the lock: //:toolkit)
selects every model, and a change to tests/ or ci/ selects none. `--detect git` maps `git diff`
paths instead (the same rule, no Pants needed). The base on a branch: the merge base with
origin/<production branch> (local <production branch> only without that remote branch). On the
production branch: the commit before the push (MMETOOLS_PUSH_BEFORE / CI_COMMIT_BEFORE_SHA), else
the previous commit; and every model whose current version production lacks is built too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from rich.console import Console
from rich.table import Table

from mmetools.build.files import artifact_file_name, evidence_name
from mmetools.core.errors import MmetoolsError
from mmetools.model.folder import TENANTS_DIR, own_folder, split_model_name, tenant_model_name
from mmetools.pipeline import STEP_NAMES
from mmetools.rendering.console import StepRow, step_line, steps_table
from mmetools.rendering.junit import write_steps_junit
from mmetools.rendering.progress import HEARTBEAT_SECONDS, step_progress

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = "models"
VERSION_FILE = "model_version.txt"
# Paths whose change affects every model: mirrors //:toolkit (BUILD) for `--detect git`.
TOOLKIT_PATHS = ("src/mmetools/", "mmetools.toml", "pyproject.toml", "uv.lock", "models/BUILD")
REPOSITORY = "(repo)"
STEPS = ("quality", "build", "diff", "publish", "smoke")
# The build's own steps (from its JUnit report, named by the pipeline), shown in the summary in
# place of "build".
TABLE_STEPS = ("quality", "build", *STEP_NAMES, "diff", "publish", "smoke")
TARGET_TYPE = "triton_model"
FAMILY_TARGET_TYPE = "triton_model_family"  # generates one triton_model per tenant
# Branch variables CI systems set (a CI checkout is often a detached HEAD).
BRANCH_VARIABLES = ("MMETOOLS_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME")


class PipelineError(Exception):
    """A usage or repository problem found before any step ran."""


# --------------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str


# (argv, cwd, extra environment) -> result. Tests inject a recording runner.
CommandRunner = Callable[[Sequence[str], Path, Mapping[str, str]], CommandResult]


def run_command(argv: Sequence[str], cwd: Path, extra_env: Mapping[str, str]) -> CommandResult:
    completed = subprocess.run(
        list(argv),
        cwd=cwd,
        env={**os.environ, **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        check=False,
    )
    return CommandResult(completed.returncode, completed.stdout)


def git(repo: Path, *args: str) -> str | None:
    """Output of a git command, or None when it fails (no such ref, not a repository)."""
    completed = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


# --------------------------------------------------------------------------------------------------
# What to build
# --------------------------------------------------------------------------------------------------


def all_models(repo: Path) -> list[str]:
    """Every model name: models/<name>/ with a version, and each tenant of a family
    (models/<family>/tenants/<tenant>/ with a version) as <family>-<tenant>."""
    models = repo / MODELS_DIR
    if not models.is_dir():
        return []
    names = []
    for folder in models.iterdir():
        if (folder / VERSION_FILE).is_file():
            names.append(folder.name)
        elif (folder / TENANTS_DIR).is_dir():
            names.extend(tenant_model_name(folder.name, t.name)
                         for t in (folder / TENANTS_DIR).iterdir()
                         if (t / VERSION_FILE).is_file())  # fmt: skip
    return sorted(names)


def model_dir(model: str) -> str:
    """The folder argument of a model: models/<name>, a tenant's models/<family>/tenants/<t>."""
    return own_folder(model, Path()).as_posix()


def current_branch(repo: Path, environ: Mapping[str, str]) -> str | None:
    for variable in BRANCH_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    return branch if branch and branch != "HEAD" else None


# The commit before the push, as CI systems give it (GitHub: `github.event.before`, which the
# workflow passes as MMETOOLS_PUSH_BEFORE; GitLab: CI_COMMIT_BEFORE_SHA). All zeros: a new branch.
PUSH_BEFORE_VARIABLES = ("MMETOOLS_PUSH_BEFORE", "CI_COMMIT_BEFORE_SHA")


@dataclass(frozen=True)
class ChangeBase:
    """The commit a run compares with, and how it was chosen (printed with the selection)."""

    sha: str
    how: str


def push_before(repo: Path, environ: Mapping[str, str]) -> ChangeBase | None:
    """The commit before this push (the push's whole range), when CI names one this clone has.
    A zero sha (new branch), an empty one (a pull request event) or one this clone lacks (a
    force push, a shallow clone) gives None."""
    for variable in PUSH_BEFORE_VARIABLES:
        sha = environ.get(variable, "").strip()
        if not sha:
            continue
        if set(sha) == {"0"}:
            return None
        # After a force push the old tip is no ancestor: compare with where the two met.
        base = git(repo, "merge-base", sha, "HEAD")
        return ChangeBase(base, f"the push's range ({variable}={sha[:12]})") if base else None
    return None


def change_base(
    repo: Path, branch: str | None, production_branch: str, environ: Mapping[str, str]
) -> ChangeBase | None:
    """The commit this run is compared with.

    On the production branch: the commit before the push (every commit of the push counts),
    else the previous commit (first parent: what a merge brought); the production check
    (`missing_from_production`) adds what either misses. On any other branch: the merge base
    with `origin/<production branch>` (the production branch as the remote holds it, what CI
    sees), or with the local `<production branch>` only in a clone without that remote branch.
    """
    if branch == production_branch:
        pushed = push_before(repo, environ)
        if pushed is not None:
            return pushed
        previous = git(repo, "rev-parse", "--verify", "-q", "HEAD^")
        return ChangeBase(previous, "the previous commit") if previous else None
    for ref in (f"origin/{production_branch}", production_branch):
        if git(repo, "rev-parse", "--verify", "-q", ref):
            base = git(repo, "merge-base", "HEAD", ref)
            return ChangeBase(base, f"the merge base with {ref}") if base else None
    return None


def merge_base(repo: Path, branch: str | None, production_branch: str) -> str | None:
    """The sha of :func:`change_base` without CI's push variables."""
    base = change_base(repo, branch, production_branch, {})
    return base.sha if base else None


def is_toolkit_path(path: str) -> bool:
    return any(path.startswith(t) if t.endswith("/") else path == t for t in TOOLKIT_PATHS)


def models_of_paths(paths: Sequence[str], models: Sequence[str]) -> list[str]:
    """Models affected by changed paths: their own folder, or all of them for a toolkit path.
    A tenant's own folder selects that tenant; any other file of a family selects all of its
    tenants (the same rule as the triton_model_family targets' sources)."""
    if any(is_toolkit_path(p) for p in paths):
        return sorted(models)
    touched: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if parts[0] != MODELS_DIR or len(parts) < 3:
            continue
        if len(parts) >= 5 and parts[2] == TENANTS_DIR:
            touched.add(tenant_model_name(parts[1], parts[3]))
        else:
            touched.add(parts[1])
    return sorted(m for m in models if m in touched or split_model_name(m)[0] in touched)


def changed_models_git(repo: Path, base: str) -> list[str]:
    """Models changed between `base` and the working tree (committed or not), by `git diff`."""
    diff = git(repo, "diff", "--name-only", base)
    untracked = git(repo, "ls-files", "--others", "--exclude-standard")
    if diff is None:
        raise PipelineError(f"git diff against {base} failed: is it a commit of this repository?")
    paths = [p for p in (diff + "\n" + (untracked or "")).splitlines() if p]
    return models_of_paths(paths, all_models(repo))


def changed_models_pants(repo: Path, base: str, runner: CommandRunner) -> list[str]:
    """Models changed since `base`, their dependents included, as Pants sees them."""
    result = runner(
        [
            "./pants",
            f"--changed-since={base}",
            "--changed-dependents=transitive",
            "--filter-target-type=triton_model",
            "list",
        ],
        repo,
        {},
    )
    if result.returncode != 0:
        raise PipelineError(f"./pants could not list the changed models:\n{_tail(result.output)}")
    names = []
    for line in result.output.splitlines():
        line = line.strip()
        if line.startswith(f"{MODELS_DIR}/") and (":" in line or "#" in line) and " " not in line:
            # models/<name>:<name>, or a family's generated target per tenant, which Pants
            # prints models/<family>#<tenant> (models/<family>:<target>#<tenant> when the
            # target is not named after its folder)
            address, generated, tenant = line.partition("#")
            folder = address.partition(":")[0].split("/")[1]
            names.append(tenant_model_name(folder, tenant) if generated else folder)
    return sorted(set(names) & set(all_models(repo)))


# --------------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    model: str  # a model name, or REPOSITORY for repository-wide steps
    name: str  # one of STEPS
    argv: tuple[str, ...]
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    step: Step
    status: str  # "passed", "failed" or "skipped"
    seconds: float
    output: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PipelineOptions:
    repo: Path
    models: tuple[str, ...]
    branch: str
    changed_since: str | None  # None: lint and check everything
    run_dir: str  # this run's own output folder, relative to repo (dist/runs/<run>-<random>)
    publish: bool = True
    use_pants: bool = True
    quality: bool = True
    mmetools: str = ".venv/bin/mmetools"
    reports: str = "dist/reports"
    heartbeat: float = HEARTBEAT_SECONDS  # a line at least this often while a step runs (no TTY)
    # After publishing: smoke the new artifacts on staging's endpoint (a branch), or warm them on
    # production's (the production branch), when mmetools.toml declares that endpoint.
    endpoint_stage: str = "staging"
    endpoint_declared: bool = False


def _version(repo: Path, model: str) -> str:
    return (repo / model_dir(model) / VERSION_FILE).read_text(encoding="utf-8").strip()


def artifact_path(options: PipelineOptions, model: str) -> str:
    """Where this run's build of ``model`` leaves its artifact (relative to the repository)."""
    return f"{options.run_dir}/{artifact_file_name(model, _version(options.repo, model))}"


def evidence_of(artifact: str) -> str:
    return evidence_name(artifact)


def quality_step(options: PipelineOptions) -> Step:
    if not options.use_pants:
        # Same tools and settings as Pants' black and mypy, from the repository's .venv.
        script = ".venv/bin/black --check -q src tests ci models && .venv/bin/mypy"
        return Step(REPOSITORY, "quality", ("sh", "-c", script))
    if options.changed_since:
        scope = (f"--changed-since={options.changed_since}", "--changed-dependents=transitive")
        return Step(REPOSITORY, "quality", ("./pants", *scope, "lint", "check"))
    return Step(REPOSITORY, "quality", ("./pants", "lint", "check", "::"))


def build_junit(options: PipelineOptions, model: str) -> str:
    return f"{options.reports}/{model}-build.xml"


def diff_report(options: PipelineOptions, model: str, suffix: str) -> str:
    return f"{options.reports}/{model}-diff{suffix}"


def publish_report(options: PipelineOptions, model: str) -> str:
    return f"{options.reports}/{model}-publish.json"


def smoke_junit(options: PipelineOptions, model: str) -> str:
    return f"{options.reports}/{model}-smoke.xml"


def smoke_step(options: PipelineOptions, model: str) -> Step:
    """`mmetools smoke` of the artifact just published: every fixture on staging's endpoint, or
    the keep-warm call (first-call latency) on production's."""
    name = artifact_file_name(model, _version(options.repo, model))
    argv = (options.mmetools, "smoke", options.endpoint_stage, name, "--junit",
            smoke_junit(options, model))  # fmt: skip
    if options.endpoint_stage == "production":
        return Step(model, "smoke", (*argv, "--warm"))
    return Step(model, "smoke", (*argv, "--branch", options.branch))


def diff_step(options: PipelineOptions, model: str, artifact: str) -> Step:
    """Compare this build with the published previous version before publishing (`mmetools diff`,
    i.e. `mmetools.release.diff.diff_against_published`): exit 1 over a threshold."""
    return Step(model, "diff", (options.mmetools, "diff", model_dir(model), "--artifact",
                                artifact, "--branch", options.branch,
                                "--markdown", diff_report(options, model, ".md"),
                                "--junit-xml", diff_report(options, model, ".xml"),
                                "--json", diff_report(options, model, ".json")))  # fmt: skip


def build_groups(models: Sequence[str]) -> list[tuple[str, ...]]:
    """The models each `mmetools build` builds: a model alone, a family's selected tenants
    together (one env and one Triton server for all of them), in the order given."""
    groups: dict[str, list[str]] = {}
    for model in models:
        family, tenant = split_model_name(model)
        groups.setdefault(f"{family}-" if tenant is not None else model, []).append(model)
    return [tuple(group) for group in groups.values()]


def build_argv(options: PipelineOptions, group: Sequence[str]) -> tuple[str, ...]:
    """The build of ``group`` (see build_groups); a family's JUnit report is named after it."""
    label = group[0] if len(group) == 1 else split_model_name(group[0])[0]
    return (options.mmetools, "build", *(model_dir(m) for m in group), "--out", options.run_dir,
            "--junit-xml", build_junit(options, label))  # fmt: skip


def model_steps(
    options: PipelineOptions, model: str, group: Sequence[str] | None = None
) -> list[Step]:
    """The steps of one model, in pipeline order (see the module docstring); its build is
    that of its ``group`` (build_groups), itself alone by default."""
    artifact = artifact_path(options, model)
    tool = options.mmetools
    steps = [Step(model, "build", build_argv(options, group or (model,)))]
    steps.append(diff_step(options, model, artifact))
    if options.publish:
        publish = (tool, "publish", artifact, "--branch", options.branch, "--json",
                   publish_report(options, model))  # fmt: skip
        steps.append(Step(model, "publish", publish))
        steps.append(smoke_step(options, model))
    return steps


def models_without_target(repo: Path) -> list[str]:
    """Folders under models/ that hold a model (a model_version.txt or a step config) but whose
    BUILD declares no triton_model: Pants would never test, package or select them."""
    models = repo / MODELS_DIR
    if not models.is_dir():
        return []
    missing = []
    for folder in sorted(p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / VERSION_FILE).is_file() and not any(folder.glob("*/config.pbtxt")):
            continue
        build = folder / "BUILD"
        text = build.read_text(encoding="utf-8") if build.is_file() else ""
        if f"{TARGET_TYPE}(" not in text and f"{FAMILY_TARGET_TYPE}(" not in text:
            missing.append(folder.name)
    return missing


# --------------------------------------------------------------------------------------------------
# Running the pipeline
# --------------------------------------------------------------------------------------------------


def _tail(output: str, lines: int = 30) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])


@dataclass
class Pipeline:
    options: PipelineOptions
    runner: CommandRunner = run_command
    console: Console = field(default_factory=lambda: Console(highlight=False))
    clock: Callable[[], float] = time.monotonic
    results: list[StepResult] = field(default_factory=list)
    build_rows: list[StepRow] = field(default_factory=list)  # the builds' own steps
    built: list[str] = field(default_factory=list)  # artifacts this run's builds produced

    def _run(self, step: Step) -> StepResult:
        label = step.name if step.model == REPOSITORY else f"{step.name} {step.model}"
        started = self.clock()
        with step_progress(self.console, label, interval=self.options.heartbeat):
            result = self.runner(step.argv, self.options.repo, step.extra_env)
        seconds = self.clock() - started
        status = "passed" if result.returncode == 0 else "failed"
        reason = "" if result.returncode == 0 else f"exit {result.returncode}"
        return StepResult(step, status, seconds, result.output, reason)

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        self.console.print(step_line(_row(result)), soft_wrap=True)
        if result.status == "failed" and result.output:
            self.console.print(_tail(result.output), markup=False, style="dim")
        return result

    def skip(self, step: Step, reason: str) -> StepResult:
        return self._record(StepResult(step, "skipped", 0.0, reason=reason))

    def _build(self, step: Step, shared: StepResult | None = None, size: int = 1) -> StepResult:
        """Run the build (or take ``shared``: the one build of a family's ``size`` tenants); it
        passed for this model only if this run's folder now holds its artifact and evidence (a
        build that printed success having built nothing is a failure; one tenant failing does
        not fail the others)."""
        result = shared if shared is not None else self._run(step)
        if shared is None:
            self.build_rows.extend(read_build_junit(self.options.repo / step.argv[-1]))
        artifact = artifact_path(self.options, step.model)
        missing = [p for p in (artifact, evidence_of(artifact))
                   if not (self.options.repo / p).is_file()]  # fmt: skip
        seconds = result.seconds / size
        if missing:
            reason = result.reason or f"exit 0 but built nothing: {', '.join(missing)} missing"
            return StepResult(step, "failed", seconds, result.output, reason)
        self.built.append(artifact)
        return StepResult(step, "passed", seconds, result.output)

    def _diff(self, step: Step) -> StepResult:
        """Run the diff; a first version (nothing published below it) is a skipped step with the
        report's note, and publishing goes on. A diff that wrote no report did not run: failed."""
        result = self._run(step)
        if result.status != "passed":
            return result
        report = self.options.repo / diff_report(self.options, step.model, ".json")
        try:
            document = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            reason = f"exit 0 but no diff report: {report.relative_to(self.options.repo)}: {e}"
            return StepResult(step, "failed", result.seconds, result.output, reason)
        if document.get("skipped"):
            return StepResult(step, "skipped", result.seconds, result.output, document["note"])
        return result

    def run(self) -> list[StepResult]:
        if self.options.quality:
            quality = self._record(self._run(quality_step(self.options)))
        else:
            quality = self.skip(quality_step(self.options), "--skip-quality")
            quality = StepResult(quality.step, "passed", 0.0)
        for group in build_groups(self.options.models):
            shared: StepResult | None = None
            if len(group) > 1:  # a family's tenants: one build, then each tenant's own steps
                step = Step(split_model_name(group[0])[0], "build", build_argv(self.options, group))
                shared = self._run(step)
                self.build_rows.extend(read_build_junit(self.options.repo / step.argv[-1]))
            for model in group:
                self._model(model, group, quality, shared)
        return self.results

    def _model(
        self, model: str, group: Sequence[str], quality: StepResult, shared: StepResult | None
    ) -> None:
        failed: StepResult | None = None
        for step in model_steps(self.options, model, group):
            if failed is not None:
                self.skip(step, f"{failed.step.name} failed")
            elif step.name == "diff" and not self.options.publish:
                self.skip(step, "--no-publish: no publish to gate")
            elif step.name == "publish" and quality.status != "passed":
                self.skip(step, "code quality failed")
            elif step.name == "smoke" and not self.options.endpoint_declared:
                stage = self.options.endpoint_stage
                self.skip(step, f"mmetools.toml declares no endpoints.{stage}: no {stage} "
                                "endpoint to smoke")  # fmt: skip
            elif step.name == "smoke" and self.results[-1].status != "passed":
                self.skip(step, f"publish {self.results[-1].status}: nothing new to smoke")
            else:
                if step.name == "build":
                    outcome = self._record(self._build(step, shared, len(group)))
                else:
                    outcome = self._record({"diff": self._diff}.get(step.name, self._run)(step))
                failed = outcome if outcome.status == "failed" else None

    @property
    def failures(self) -> list[StepResult]:
        return [r for r in self.results if r.status == "failed"]


def _row(result: StepResult) -> StepRow:
    return StepRow(result.step.model, result.step.name, result.status, result.seconds,
                   result.reason)  # fmt: skip


def read_build_junit(path: Path) -> list[StepRow]:
    """The steps `mmetools build --junit-xml` reported (none when it wrote no report)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return []
    rows = []
    for case in root.iter("testcase"):
        status = "failed" if case.find("failure") is not None else (
            "skipped" if case.find("skipped") is not None else "passed"
        )  # fmt: skip
        rows.append(StepRow(case.get("classname", ""), case.get("name", ""), status,
                            float(case.get("time", "0"))))  # fmt: skip
    return rows


def published_lines(pipeline: Pipeline) -> list[str]:
    """Per model: the URI of every object its publish step wrote or found already there
    (from `mmetools publish --json`), or why nothing was published."""
    options = pipeline.options
    lines = []
    for model in options.models:
        steps = [r for r in pipeline.results if r.step.model == model]
        failed = next((r for r in steps if r.status == "failed"), None)
        published = next((r for r in steps if r.step.name == "publish"), None)
        report = options.repo / publish_report(options, model)
        if failed is not None and failed.step.name != "publish":
            lines.append(f"{model}: nothing published: {failed.step.name} failed ({failed.reason})")
            continue
        if published is None or published.status == "skipped":
            why = published.reason if published is not None else "--no-publish"
            lines.append(f"{model}: nothing published: {why}")
            continue
        try:
            document = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            lines.append(f"{model}: publish {published.status} ({published.reason or 'exit 0'}) "
                         f"but wrote no report: {publish_report(options, model)}")  # fmt: skip
            continue
        for result in document.get("results", []):
            objects = result.get("objects") or [result.get("uri", "?")]
            lines.append(f"{model}: {result['role']} {result['action']}: {objects[0]}")
            lines.extend(f"{' ' * (len(model) + 2)}{'':>{len(result['role'])}}  + {uri}"
                         for uri in objects[1:])  # fmt: skip
        for failure in document.get("failures", []):
            lines.append(f"{model}: {failure['role']} failed: {failure['uri']}: "
                         f"{failure['message']}")  # fmt: skip
    return lines


def smoke_lines(pipeline: Pipeline) -> list[str]:
    """Per smoked model: its endpoint, fixtures passed and the first (cold) call's latency, from
    the JUnit report `mmetools smoke --junit` wrote."""
    lines = []
    for result in pipeline.results:
        if result.step.name != "smoke" or result.status == "skipped":
            continue
        path = pipeline.options.repo / smoke_junit(pipeline.options, result.step.model)
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError):
            lines.append(f"{result.step.model}: smoke {result.status}, no report ({path.name})")
            continue
        endpoint = root.get("name", "").removeprefix("mmetools smoke ")
        for suite in root.iter("testsuite"):
            cases = list(suite.iter("testcase"))
            failed = sum(1 for c in cases if c.find("failure") is not None or
                         c.find("error") is not None)  # fmt: skip
            first = float(cases[0].get("time", "0")) * 1000 if cases else 0.0
            what = "warm call" if pipeline.options.endpoint_stage == "production" else "smoke"
            lines.append(f"{result.step.model}: {what} on {endpoint} {suite.get('name')}: "
                         f"{len(cases) - failed}/{len(cases)} fixtures passed, first call "
                         f"{first:.0f} ms")  # fmt: skip
    return lines


def summary_table(pipeline: Pipeline) -> Table:
    rows = [_row(r) for r in pipeline.results] + pipeline.build_rows
    return steps_table(rows, TABLE_STEPS, "mmetools pipeline")


def write_junit(results: Sequence[StepResult], path: Path) -> None:
    """One testsuite per model, one testcase per step (written atomically)."""
    write_steps_junit(
        [StepRow(r.step.model, r.step.name, r.status, r.seconds,
                 f"{r.reason}\n{_tail(r.output, 200)}" if r.status == "failed" else r.reason)
         for r in results],
        path,
        "mmetools pipeline",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _production_branch(repo: Path) -> str:
    # The settings module is the one place that knows the production branch (mmetools.toml + env).
    from mmetools.core.settings import load_settings

    return load_settings(repo).publish.production_branch


def _reaches_production(repo: Path, branch: str) -> bool:
    from mmetools.core.settings import load_settings
    from mmetools.release.publish import is_production_branch

    return bool(branch) and is_production_branch(branch, load_settings(repo))


def _endpoint_stage(repo: Path, branch: str) -> tuple[str, bool]:
    """Which endpoint the run smokes after publishing, and whether mmetools.toml declares it."""
    from mmetools.core.settings import load_settings

    stage = "production" if _reaches_production(repo, branch) else "staging"
    return stage, stage in load_settings(repo).endpoints


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ci/pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--all", action="store_true", help="Every model, not only the changed ones."
    )
    parser.add_argument(
        "--model", action="append", default=[], help="Only this model (repeatable)."
    )
    parser.add_argument("--base", help="Compare with this commit (default: the merge base).")
    parser.add_argument(
        "--branch", help="Publish for this branch (default: CI variables, then git)."
    )
    parser.add_argument(
        "--no-publish", action="store_true", help="Stop after testing the artifact."
    )
    parser.add_argument(
        "--skip-quality",
        action="store_true",
        help="No black/mypy step (local runs only: CI configurations never pass it).",
    )
    parser.add_argument(
        "--detect", choices=("pants", "git"), default="pants", help="How changed models are found."
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_SECONDS,
        metavar="SECONDS",
        help="Outside a terminal, print a line this often while a step runs "
        f"(default {HEARTBEAT_SECONDS:g}).",
    )
    parser.add_argument(
        "--no-pants",
        action="store_true",
        help="Run test and package with mmetools directly (no Pants caching).",
    )
    return parser.parse_args(list(argv))


def not_in_production(repo: Path, models: Sequence[str]) -> list[str]:
    """The models whose current `<name>_<version>.tar.gz` the production destination lacks
    (one HEAD per model on S3, a stat on a folder)."""
    from mmetools.core.settings import load_settings
    from mmetools.release.production import missing_from_production

    names = {artifact_file_name(m, _version(repo, m)): m for m in models}
    return sorted(names[n] for n in missing_from_production(list(names), load_settings(repo)))


def select_models(
    args: argparse.Namespace,
    repo: Path,
    branch: str,
    runner: CommandRunner,
    console: Console,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], str | None]:
    """The models to build and the commit they are compared with (None: everything).

    On the production branch, every model whose current version production does not hold is
    built too, whatever changed: no model change on it is ever skipped (a push of several
    commits, an earlier failed run)."""
    models = all_models(repo)
    if args.model:
        unknown = sorted(set(args.model) - set(models))
        if unknown:
            raise PipelineError(
                f"no such model: {', '.join(unknown)} (models: {', '.join(models) or 'none'})"
            )
        return sorted(args.model), None
    if args.all:
        return models, None
    production_branch = _production_branch(repo)
    found = change_base(repo, branch, production_branch, environ or {})
    base = ChangeBase(args.base, f"--base {args.base}") if args.base else found
    if base is None:
        console.print("no merge base found (first commit, or no production branch): all models")
        return models, None
    if args.detect == "pants" and not args.no_pants:
        selected = changed_models_pants(repo, base.sha, runner)
    else:
        selected = changed_models_git(repo, base.sha)
    console.print(
        f"changed since {base.sha[:12]} ({base.how}): {', '.join(selected) or 'no model'} "
        f"(of {len(models)} models)",
        markup=False,
    )
    if branch == production_branch:
        unpublished = [m for m in not_in_production(repo, models) if m not in selected]
        if unpublished:
            console.print(
                f"not in production at their current version: {', '.join(unpublished)}",
                markup=False,
            )
        selected = sorted({*selected, *unpublished})
    return selected, base.sha


def main(
    argv: Sequence[str] | None = None,
    *,
    repo: Path = REPO_ROOT,
    runner: CommandRunner = run_command,
    environ: Mapping[str, str] | None = None,
    console: Console | None = None,
) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.heartbeat > 0:  # also refuses nan
        console = console or Console(highlight=False)
        console.print(f"error: --heartbeat {args.heartbeat}: give a positive number of seconds")
        return 2
    # CI logs are no terminal: rich would wrap the summary table at 80 columns.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    environ = os.environ if environ is None else environ
    branch = args.branch or current_branch(repo, environ)
    if not branch and not args.no_publish:
        console.print(
            "error: no branch to publish for (detached HEAD): pass --branch or --no-publish"
        )
        return 2
    if branch:
        # The same rule as `mmetools publish`, before any step: a ref-looking name such as
        # refs/heads/main must not pass for the production branch (nor be compared as it).
        from mmetools.core.errors import UsageError
        from mmetools.release.publish.branches import checked_branch

        try:
            checked_branch(branch)
        except UsageError as e:
            console.print(f"error: {e}", markup=False)
            return 2
    try:
        models, base = select_models(args, repo, branch or "", runner, console, environ)
    except PipelineError as e:
        console.print(f"error: {e}", markup=False)
        return 2
    except MmetoolsError as e:  # production could not be asked which versions it holds
        console.print(f"error: {e}", markup=False, soft_wrap=True)
        return 1
    without_target = models_without_target(repo)
    if without_target:
        for name in without_target:
            console.print(
                f"error: {MODELS_DIR}/{name}: no {TARGET_TYPE} target, so Pants never tests, "
                f"packages or selects it: run `./pants tailor {MODELS_DIR}/{name}` (or add "
                f'{TARGET_TYPE}(name="{name}") to {MODELS_DIR}/{name}/BUILD)',
                markup=False,
                soft_wrap=True,
            )
        return 1
    if not models:
        if base is None:
            console.print("error: no model to build (no models/<name>/ with a model_version.txt)")
            return 1
        console.print(f"no model changed since {base[:12]}: nothing built, nothing published")
        write_junit([], repo / "dist" / "reports" / "pipeline.xml")  # CI finds a report
        return 0
    run_dir = new_run_dir(repo, environ)
    stage, declared = _endpoint_stage(repo, branch or "")
    options = PipelineOptions(
        repo=repo,
        models=tuple(models),
        branch=branch or "",
        changed_since=base,
        run_dir=run_dir,
        publish=not args.no_publish,
        use_pants=not args.no_pants,
        quality=not args.skip_quality,
        heartbeat=args.heartbeat,
        endpoint_stage=stage,
        endpoint_declared=declared,
    )
    console.print(f"run folder: {run_dir}", markup=False)
    pipeline = Pipeline(options, runner=runner, console=console)
    pipeline.run()
    console.print(summary_table(pipeline))
    console.print("published objects:" if options.publish else "published objects: none "
                  "(--no-publish)")  # fmt: skip
    for line in published_lines(pipeline) if options.publish else []:
        console.print(f"  {line}", markup=False, soft_wrap=True)
    for line in smoke_lines(pipeline) if options.publish else []:
        console.print(f"  {line}", markup=False, soft_wrap=True)
    write_junit(pipeline.results, repo / options.reports / "pipeline.xml")
    if pipeline.failures or not pipeline.built:
        for failure in pipeline.failures:
            console.print(
                f"[red]pipeline failed:[/] {failure.step.model}: step '{failure.step.name}' "
                f"({failure.reason}): {' '.join(failure.step.argv)}"
            )
        if not pipeline.built:
            console.print(
                f"[red]pipeline failed:[/] asked to build {len(models)} model(s), built none"
            )
        return 1
    roles = "staging and production" if _reaches_production(repo, branch or "") else "staging"
    console.print(
        f"pipeline passed: {len(pipeline.built)} model(s) built"
        + (f" and published to {roles} from branch {branch}" if options.publish else "")
        + f" (run folder {run_dir}; the objects are listed above)"
    )
    return 0


def new_run_dir(repo: Path, environ: Mapping[str, str]) -> str:
    """A new, empty folder for this run's artifacts: dist/runs/<CI run id or 'local'>-<random>."""
    from mmetools.release.provenance import ci_run_id

    runs = repo / "dist" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in ci_run_id(environ) or "local")
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=runs)).relative_to(repo).as_posix()


if __name__ == "__main__":
    sys.exit(main())
