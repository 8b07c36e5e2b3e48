"""The CI pipeline of the model monorepo: what runs on every push (see `ci/pipeline --help`).

For the models changed since the merge base (every model with --all), in this order:
  1. code quality: black and mypy through Pants (`./pants lint check`), once for the repository
  2. fetch weights (DVC, `mmetools fetch`)
  3. pack the Python steps' envs (`mmetools env`, cached by requirements hash)
  4. test on a local Triton (`./pants test models/<name>:`, cached by Pants on the model's inputs)
  5. build <name>_<version>.tar.gz (`./pants package`) and test the artifact through SageMaker MME
     emulation (`mmetools test --artifact`)
  6. publish: to staging on any branch, to production on the production branch (`mmetools publish`)
A model whose step fails runs no further step; nothing is published when code quality fails.
One line per step as it runs, a summary table per model at the end, JUnit XML in dist/reports/,
and a non-zero exit naming each failed model and step.

Which models changed: Pants' `--changed-since=<base> --changed-dependents=transitive`, so a
change to the toolkit every model depends on (src/mmetools, mmetools.toml, the lock: //:toolkit)
selects every model, and a change to tests/ or ci/ selects none. `--detect git` maps `git diff`
paths instead (the same rule, no Pants needed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = "models"
VERSION_FILE = "model_version.txt"
# Paths whose change affects every model: mirrors //:toolkit (BUILD) for `--detect git`.
TOOLKIT_PATHS = ("src/mmetools/", "mmetools.toml", "pyproject.toml", "uv.lock", "models/BUILD")
REPOSITORY = "(repo)"
STEPS = ("quality", "fetch", "env", "test", "package", "artifact", "publish")
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
    models = repo / MODELS_DIR
    if not models.is_dir():
        return []
    return sorted(p.name for p in models.iterdir() if (p / VERSION_FILE).is_file())


def current_branch(repo: Path, environ: Mapping[str, str]) -> str | None:
    for variable in BRANCH_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    return branch if branch and branch != "HEAD" else None


def merge_base(repo: Path, branch: str | None, production_branch: str) -> str | None:
    """The commit this push is compared with: the merge base with the production branch, or
    on the production branch itself the previous commit (first parent: what a merge brought)."""
    if branch == production_branch:
        return git(repo, "rev-parse", "--verify", "-q", "HEAD^")
    for ref in (f"origin/{production_branch}", production_branch):
        if git(repo, "rev-parse", "--verify", "-q", ref):
            return git(repo, "merge-base", "HEAD", ref)
    return None


def is_toolkit_path(path: str) -> bool:
    return any(path.startswith(t) if t.endswith("/") else path == t for t in TOOLKIT_PATHS)


def models_of_paths(paths: Sequence[str], models: Sequence[str]) -> list[str]:
    """Models affected by changed paths: their own folder, or all of them for a toolkit path."""
    if any(is_toolkit_path(p) for p in paths):
        return sorted(models)
    touched = {
        p.split("/")[1] for p in paths if p.startswith(f"{MODELS_DIR}/") and p.count("/") >= 2
    }
    return sorted(m for m in models if m in touched)


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
        if line.startswith(f"{MODELS_DIR}/") and ":" in line and " " not in line:
            names.append(line.split(":")[0].split("/")[1])
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
    publish: bool = True
    use_pants: bool = True
    quality: bool = True
    mmetools: str = ".venv/bin/mmetools"
    reports: str = "dist/reports"


def artifact_path(repo: Path, model: str) -> str:
    version = (repo / MODELS_DIR / model / VERSION_FILE).read_text(encoding="utf-8").strip()
    return f"dist/{model}_{version}.tar.gz"


def quality_step(options: PipelineOptions) -> Step:
    if not options.use_pants:
        # Same tools and settings as Pants' black and mypy, from the repository's .venv.
        script = ".venv/bin/black --check -q src tests ci models && .venv/bin/mypy"
        return Step(REPOSITORY, "quality", ("sh", "-c", script))
    if options.changed_since:
        scope = (f"--changed-since={options.changed_since}", "--changed-dependents=transitive")
        return Step(REPOSITORY, "quality", ("./pants", *scope, "lint", "check"))
    return Step(REPOSITORY, "quality", ("./pants", "lint", "check", "::"))


def model_steps(options: PipelineOptions, model: str) -> list[Step]:
    """The steps of one model, in pipeline order (see the module docstring)."""
    folder = f"{MODELS_DIR}/{model}"
    target = f"{folder}:{model}"
    artifact = artifact_path(options.repo, model)
    tool = options.mmetools
    report = f"{options.reports}/{model}"
    test: tuple[str, ...]
    package: tuple[str, ...]
    if options.use_pants:
        test = ("./pants", "test", target)
        package = ("./pants", "package", target)
    else:
        test = (tool, "test", folder, "--junit-xml", f"{report}-test.xml")
        package = (tool, "package", folder, "--out", "dist")
    steps = [
        Step(model, "fetch", (tool, "fetch", folder)),
        Step(model, "env", (tool, "env", folder)),
        Step(model, "test", test),
        Step(model, "package", package),
        Step(
            model,
            "artifact",
            (tool, "test", "--artifact", artifact, "--junit-xml", f"{report}-artifact.xml"),
        ),
    ]
    if options.publish:
        steps.append(
            Step(model, "publish", (tool, "publish", artifact, "--branch", options.branch))
        )
    return steps


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

    def _run(self, step: Step) -> StepResult:
        started = self.clock()
        result = self.runner(step.argv, self.options.repo, step.extra_env)
        seconds = self.clock() - started
        status = "passed" if result.returncode == 0 else "failed"
        reason = "" if result.returncode == 0 else f"exit {result.returncode}"
        return StepResult(step, status, seconds, result.output, reason)

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        mark = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]"}[
            result.status
        ]
        who = result.step.model
        extra = f"  ({result.reason})" if result.reason else ""
        self.console.print(f"{mark} {who:<24} {result.step.name:<9} {result.seconds:7.1f}s{extra}")
        if result.status == "failed" and result.output:
            self.console.print(_tail(result.output), markup=False, style="dim")
        return result

    def skip(self, step: Step, reason: str) -> StepResult:
        return self._record(StepResult(step, "skipped", 0.0, reason=reason))

    def run(self) -> list[StepResult]:
        if self.options.quality:
            quality = self._record(self._run(quality_step(self.options)))
        else:
            quality = self.skip(quality_step(self.options), "--skip-quality")
            quality = StepResult(quality.step, "passed", 0.0)
        for model in self.options.models:
            failed: StepResult | None = None
            for step in model_steps(self.options, model):
                if failed is not None:
                    self.skip(step, f"{failed.step.name} failed")
                elif step.name == "publish" and quality.status != "passed":
                    self.skip(step, "code quality failed")
                else:
                    outcome = self._record(self._run(step))
                    failed = outcome if outcome.status == "failed" else None
        return self.results

    @property
    def failures(self) -> list[StepResult]:
        return [r for r in self.results if r.status == "failed"]


def summary_table(results: Sequence[StepResult]) -> Table:
    table = Table(title="mmetools pipeline", show_lines=False)
    table.add_column("model")
    for step in STEPS:
        table.add_column(step, justify="right")
    table.add_column("total", justify="right")
    rows: dict[str, dict[str, StepResult]] = {}
    for r in results:
        rows.setdefault(r.step.model, {})[r.step.name] = r
    for model, steps in rows.items():
        cells = []
        for name in STEPS:
            cell = steps.get(name)
            if cell is None:
                cells.append("")
            elif cell.status == "passed":
                cells.append(f"[green]✓[/] {cell.seconds:.1f}s")
            elif cell.status == "failed":
                cells.append(f"[red]✗[/] {cell.seconds:.1f}s")
            else:
                cells.append("[yellow]skipped[/]")
        total = sum(r.seconds for r in steps.values())
        table.add_row(model, *cells, f"{total:.1f}s")
    return table


def write_junit(results: Sequence[StepResult], path: Path) -> None:
    """One testsuite per model, one testcase per step (written atomically)."""
    suites = ElementTree.Element("testsuites", name="mmetools pipeline")
    by_model: dict[str, list[StepResult]] = {}
    for r in results:
        by_model.setdefault(r.step.model, []).append(r)
    for model, model_results in by_model.items():
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=model,
            tests=str(len(model_results)),
            failures=str(sum(r.status == "failed" for r in model_results)),
            skipped=str(sum(r.status == "skipped" for r in model_results)),
            time=f"{sum(r.seconds for r in model_results):.3f}",
        )
        for r in model_results:
            case = ElementTree.SubElement(
                suite, "testcase", classname=model, name=r.step.name, time=f"{r.seconds:.3f}"
            )
            if r.status == "failed":
                failure = ElementTree.SubElement(case, "failure", message=r.reason)
                failure.text = _tail(r.output, 200)
            elif r.status == "skipped":
                ElementTree.SubElement(case, "skipped", message=r.reason)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    ElementTree.ElementTree(suites).write(temporary, encoding="utf-8", xml_declaration=True)
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _production_branch(repo: Path) -> str:
    # The settings module is the one place that knows the production branch (mmetools.toml + env).
    from mmetools.settings import load_settings

    return load_settings(repo).publish.production_branch


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
        "--no-pants",
        action="store_true",
        help="Run test and package with mmetools directly (no Pants caching).",
    )
    return parser.parse_args(list(argv))


def select_models(
    args: argparse.Namespace, repo: Path, branch: str, runner: CommandRunner, console: Console
) -> tuple[list[str], str | None]:
    """The models to build and the commit they are compared with (None: everything)."""
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
    base = args.base or merge_base(repo, branch, _production_branch(repo))
    if base is None:
        console.print("no merge base found (first commit, or no production branch): all models")
        return models, None
    if args.detect == "pants" and not args.no_pants:
        selected = changed_models_pants(repo, base, runner)
    else:
        selected = changed_models_git(repo, base)
    console.print(
        f"changed since {base[:12]}: {', '.join(selected) or 'no model'} "
        f"(of {len(models)} models)"
    )
    return selected, base


def main(
    argv: Sequence[str] | None = None,
    *,
    repo: Path = REPO_ROOT,
    runner: CommandRunner = run_command,
    environ: Mapping[str, str] | None = None,
    console: Console | None = None,
) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # CI logs are no terminal: rich would wrap the summary table at 80 columns.
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    environ = os.environ if environ is None else environ
    branch = args.branch or current_branch(repo, environ)
    if not branch and not args.no_publish:
        console.print(
            "error: no branch to publish for (detached HEAD): pass --branch or --no-publish"
        )
        return 2
    try:
        models, base = select_models(args, repo, branch or "", runner, console)
    except PipelineError as e:
        console.print(f"error: {e}", markup=False)
        return 2
    options = PipelineOptions(
        repo=repo,
        models=tuple(models),
        branch=branch or "",
        changed_since=base,
        publish=not args.no_publish,
        use_pants=not args.no_pants,
        quality=not args.skip_quality,
    )
    pipeline = Pipeline(options, runner=runner, console=console)
    pipeline.run()
    console.print(summary_table(pipeline.results))
    write_junit(pipeline.results, repo / options.reports / "pipeline.xml")
    if pipeline.failures:
        for failure in pipeline.failures:
            console.print(
                f"[red]pipeline failed:[/] {failure.step.model}: step '{failure.step.name}' "
                f"({failure.reason}): {' '.join(failure.step.argv)}"
            )
        return 1
    console.print(f"pipeline passed: {len(models)} model(s) on branch {branch or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
