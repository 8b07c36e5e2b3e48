"""The ``mmetools`` command line: a thin shell over the library.

Commands parse arguments, call one library function and print its result. Every MmetoolsError
becomes a message and an exit code here, in ``main``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from mmetools.core.errors import MmetoolsError, ValidationFailed

app = typer.Typer(
    name="mmetools",
    help="Validate, test, package and publish Triton ensembles for SageMaker multi-model endpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


fixtures_app = typer.Typer(
    help="Check fixture cases and regenerate their expected values (in-process, no Triton).",
    no_args_is_help=True,
)
app.add_typer(fixtures_app, name="fixtures")


@fixtures_app.command("regen")
def fixtures_regen(
    model: Annotated[Path, typer.Argument(help="Model folder, e.g. models/screen_detector.")],
    case: Annotated[
        Optional[list[str]], typer.Option("--case", help="Only this case (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
) -> None:
    """Recompute the cases' expected outputs with an in-process run (no Triton).

    Runs the model's pre/post-processing and network directly in Python (onnxruntime / torch);
    datatypes, tolerances, descriptions and inputs stay as they are.
    """
    from rich.table import Table

    from mmetools.model.folder import model_folder
    from mmetools.model.reference import regenerate_fixtures

    folder = model_folder(model)
    results = regenerate_fixtures(folder, case or (), write=not dry_run)
    table = Table(title=f"{folder.name}: expected values {'(dry run)' if dry_run else ''}")
    for column in ("case", "output", "status", "values changed", "max abs change"):
        numeric = column.startswith(("values", "max"))
        table.add_column(column, justify="right" if numeric else "left")
    for result in results:
        for change in result.changes:
            shown = "-" if change.max_abs_change is None else f"{change.max_abs_change:.3g}"
            style = "yellow" if change.status in ("changed", "shape changed") else ""
            table.add_row(
                result.case,
                change.output,
                change.status,
                f"{change.values_changed}/{change.values}",
                shown,
                style=style,
            )
    console.print(table)
    written = sum(1 for r in results if r.written)
    changed = sum(1 for r in results if r.changed)
    if dry_run:
        console.print(f"{changed} of {len(results)} case(s) would change; nothing written")
    else:
        console.print(f"{written} of {len(results)} fixture file(s) rewritten")


@fixtures_app.command("check")
def fixtures_check(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
) -> None:
    """Compare the fixtures with an in-process run (no Triton); exit 1 when a case fails.

    Also checks every fixture file against the ensemble config (names, datatypes, shapes).
    """
    from rich.table import Table

    from mmetools.model.cases import load_fixtures, regen_hint
    from mmetools.model.reference import run_cases

    failed = 0
    wrong_values: list[str] = []
    for folder in _model_folders_of(models):
        results = run_cases(folder, load_fixtures(folder))
        table = Table(title=f"{folder.name}: fixtures vs reference run")
        for column in ("case", "output", "max abs error", "max rel error", "result"):
            table.add_column(column, justify="right" if column.startswith("max") else "left")
        for result in results:
            if result.error is not None:
                table.add_row(result.case.name, "-", "-", "-", "[red]error[/red]")
                continue
            for comparison in result.comparisons:
                table.add_row(
                    result.case.name,
                    comparison.output,
                    _number(comparison.max_abs_error),
                    _number(comparison.max_rel_error),
                    "[green]pass[/green]" if comparison.passed else "[red]FAIL[/red]",
                )
        console.print(table)
        for result in results:
            if result.error is not None:
                err_console.print(
                    f"{result.case.path}: {result.error}", markup=False, soft_wrap=True
                )
            for comparison in result.comparisons:
                if not comparison.passed:
                    err_console.print(
                        f"{result.case.path}: {comparison.message}", markup=False, soft_wrap=True
                    )
        failed += sum(1 for r in results if not r.passed)
        if any(not c.passed for r in results for c in r.comparisons):
            wrong_values.append(str(folder.path))
    if failed:
        err_console.print(f"{failed} case(s) failed")
        for folder_text in wrong_values:
            err_console.print(regen_hint(folder_text), markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3g}"


# The --mode option of every command that starts a Triton server.
TritonModeOption = Annotated[
    Optional[str],
    typer.Option("--mode", help="Triton: auto, bundled (CPU, from the wheel), native, docker."),
]


@app.command("new")
def new_model(
    name: Annotated[str, typer.Argument(help="Model name: lowercase letters, digits, '_'.")],
    framework: Annotated[
        str, typer.Option("--framework", help="Inferencer format: onnx or torchscript.")
    ] = "onnx",
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="Folder that holds the model folders.")
    ] = Path("models"),
) -> None:
    """Create a complete model folder: configs, pre/post-processing, train/export script, fixtures."""
    from mmetools.model.scaffold import next_steps, scaffold_model

    folder = scaffold_model(name, framework, models_dir)
    console.print(f"created {folder} and its BUILD")
    console.print("next, from the repository root after `source .venv/bin/activate`:")
    for command in next_steps(folder, framework):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"each step is explained in {folder / 'README.md'}")


@app.command("validate")
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model folders (models/<name>), folders of them, or Triton model repositories.",
            show_default=False,
        ),
    ],
) -> None:
    """Check configs statically: everything Triton rejects when loading the ensembles, plus the
    project's layout rules for model folders. Exit 1 when there is an error (warnings pass)."""
    from mmetools.model.validation import summary_line, validate_paths

    problems = validate_paths(paths)
    for problem in problems:
        style = "red" if problem.is_error else "yellow"
        # soft_wrap: one problem per line, whatever the terminal width (grep-able, CI logs).
        console.print(str(problem), style=style, markup=False, soft_wrap=True)
    console.print(summary_line(problems, paths), markup=False, soft_wrap=True)
    if any(problem.is_error for problem in problems):
        raise typer.Exit(1)


@app.command("publish")
def publish_command(
    artifacts: Annotated[
        list[Path],
        typer.Argument(
            help="dist/<name>_<version>.tar.gz files (their .sha256 and .manifest.json beside them).",
            show_default=False,
        ),
    ],
    branch: Annotated[
        str,
        typer.Option(
            "--branch",
            help="Git branch being published: every branch goes to staging (under its own "
            "folder), the production branch (default main) also to production.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; write nothing.")
    ] = False,
    part_size: Annotated[
        int, typer.Option("--part-size", min=5, max=5120, help="S3 multipart part size, MiB.")
    ] = 16,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Parallel S3 part uploads.")
    ] = 8,
) -> None:
    """Publish artifacts to staging and, from the production branch, to production. Versions are
    immutable: same bytes is a no-op, different bytes is refused. Exit 1 when one fails."""
    from collections import Counter

    from rich import box
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn
    from rich.table import Table

    from mmetools.release.publish import PublishOptions, PublishResult, PublishTarget, publish
    from mmetools.release.storage import MiB, LocalArtifact, S3Tuning, describe_size

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # boto3's INFO lines ("Found credentials in environment variables") are noise here;
        # mmetools logs the endpoint and region it uses itself. -v shows everything.
        for name in ("boto3", "botocore", "s3transfer", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    options = PublishOptions(
        dry_run=dry_run, s3=S3Tuning(part_size=part_size * MiB, max_concurrency=concurrency)
    )
    progress = Progress(
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def on_progress(target: PublishTarget, artifact: LocalArtifact, done: int) -> None:
        if target.uri not in tasks:
            tasks[target.uri] = progress.add_task(
                f"{target.role} {artifact.name}", total=artifact.size
            )
        progress.advance(tasks[target.uri], done)

    def on_result(r: PublishResult) -> None:
        console.print(
            f"{r.action:<9} {r.role:<10} {r.destination}  {describe_size(r.size)}  "
            f"{r.seconds:.2f}s  {r.requests} request(s)  {r.detail}",
            markup=False,
            soft_wrap=True,
        )

    with progress:
        report = publish(
            artifacts, branch, options=options, on_result=on_result, on_progress=on_progress
        )
    table = Table(
        title=f"publish --branch {branch}" + (" (dry run)" if dry_run else ""),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    longest = max((len(path.name) for path in artifacts), default=8)
    table.add_column("artifact", no_wrap=True, min_width=longest)
    for column in ("to", "action", "size", "time", "requests"):
        left = column in ("to", "action")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for r in report.results:
        table.add_row(
            r.artifact,
            r.role,
            r.action,
            describe_size(r.size),
            f"{r.seconds:.2f}s",
            str(r.requests),
        )
    for failure in report.failures:
        table.add_row(failure.artifact, failure.role, "[red]failed[/red]", "", "", "")
    counts: Counter[str] = Counter(r.action for r in report.results)
    counts.update({"failed": len(report.failures)} if report.failures else {})
    table.caption = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    console.print(table)
    for failure in report.failures:
        err_console.print(f"error: {failure.message}", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


import typing  # noqa: E402  (kept beside its only use: other commands edit the imports above)

if typing.TYPE_CHECKING:
    from mmetools.model.folder import ModelFolder


def _model_folders_of(paths: Sequence[Path]) -> list[ModelFolder]:
    """The model folders among ``paths`` (plain files such as models/BUILD are skipped with a
    note; anything else that is no model folder is an error)."""
    from mmetools.model.folder import resolve_model_args

    folders, skipped = resolve_model_args(paths)
    for path in skipped:
        err_console.print(f"skipping {path}: a file, not a model folder", markup=False)
    return folders


@app.command("env")
def env_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
) -> None:
    """Build each model's python_env.tar.gz (or reuse it from the cache), copy it into its Python
    steps and point their EXECUTION_ENV_PATH at it."""
    from mmetools.build.envpack import pack_env
    from mmetools.core.settings import load_settings

    settings = load_settings()
    for folder in _model_folders_of(models):
        with console.status(f"{folder.name}: packing env") as status:
            packed = pack_env(
                folder, settings, progress=lambda m: status.update(f"{folder.name}: {m}")
            )
        if packed is None:
            console.print(f"{folder.name}: no Python steps, no env needed", markup=False)
            continue
        how = "from the cache" if packed.cached else "built"
        steps = ", ".join(step.parent.name for step in packed.steps)
        console.print(
            f"{folder.name}: env {packed.env_hash[:12]} ({packed.backend}, Python "
            f"{packed.python_version}, {how}) in {steps}",
            markup=False,
            soft_wrap=True,
        )


@app.command("package")
def package_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the artifacts.")] = Path("dist"),
    no_env: Annotated[
        bool, typer.Option("--no-env", help="Ship no packed env (the image's Python serves).")
    ] = False,
    level: Annotated[int, typer.Option("--level", min=0, max=9, help="gzip level.")] = 6,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Deflate threads (default: cores).")
    ] = None,
) -> None:
    """Validate, fetch weights, pack the env, then write <name>_<version>.tar.gz, its .sha256 and
    its manifest into --out. The same inputs always give the same bytes."""
    import time

    from mmetools.build.package import package_model
    from mmetools.core.settings import load_settings

    settings = load_settings()
    for folder in _model_folders_of(models):
        started = time.perf_counter()
        with console.status(f"{folder.name}: packaging") as status:
            artifact = package_model(
                folder,
                out,
                settings,
                with_env=not no_env,
                level=level,
                threads=threads,
                progress=lambda m: status.update(f"{folder.name}: {m}"),
            )
        elapsed = time.perf_counter() - started
        speed = artifact.uncompressed_size / 1e6 / max(artifact.seconds, 1e-9)
        console.print(
            f"{artifact.path}  {artifact.size / 1e6:.1f} MB  sha256 {artifact.sha256[:12]}  "
            f"{elapsed:.1f} s  ({speed:.0f} MB/s writing)",
            markup=False,
            soft_wrap=True,
        )


@app.command("fetch")
def fetch_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
    remote: Annotated[
        Optional[str],
        typer.Option("--remote", "-r", help="DVC remote to pull from (default: the repo's)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace weight files that differ from their pointers.")
    ] = False,
) -> None:
    """Fetch the models' DVC-tracked weights: only files that are missing.

    Files that match their .dvc pointers are left alone, without running dvc at all."""
    import time

    from mmetools.model.dvc import fetch_weights, tracked_files
    from mmetools.core.errors import DvcError
    from mmetools.core.settings import load_settings

    settings = load_settings()
    folders = _model_folders_of(models)
    failed = 0
    for folder in folders:
        started = time.perf_counter()
        try:
            with console.status(f"{folder.name}: checking weights against their DVC pointers"):
                tracked = tracked_files(folder)
                fetched = fetch_weights(folder, settings, remote=remote, force=force)
        except DvcError as e:
            failed += 1
            err_console.print(f"error: {e}", markup=False, soft_wrap=True)
            continue
        elapsed = time.perf_counter() - started
        if not tracked:
            console.print(f"{folder.name}: no DVC-tracked files")
        elif fetched:
            names = ", ".join(path.relative_to(folder.path).as_posix() for path in fetched)
            console.print(f"{folder.name}: fetched {names} ({elapsed:.1f} s)", markup=False)
        else:
            console.print(
                f"{folder.name}: up to date ({len(tracked)} tracked file(s), {elapsed:.2f} s)"
            )
    if failed:
        raise typer.Exit(1)


@app.command("test")
def test_command(
    models: Annotated[
        Optional[list[Path]], typer.Argument(help="Model folders, e.g. models/*.")
    ] = None,
    artifact: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--artifact",
            help="Test <name>_<version>.tar.gz through Triton's SageMaker MME frontend "
            "(repeatable).",
        ),
    ] = None,
    fixtures: Annotated[
        Optional[Path],
        typer.Option("--fixtures", help="Fixture folder for --artifact (default: the model's)."),
    ] = None,
    junit_xml: Annotated[
        Optional[Path], typer.Option("--junit-xml", help="Also write a JUnit XML report here.")
    ] = None,
    mode: TritonModeOption = None,
    triton_image: Annotated[
        Optional[str],
        typer.Option("--triton-image", help="Run NVIDIA's Triton image with docker --gpus all."),
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Send each case N times (latency numbers).")
    ] = 1,
    instance_memory: Annotated[
        Optional[float],
        typer.Option("--instance-memory", help="GiB per instance: how many models fit at 80%."),
    ] = None,
) -> None:
    """Send every fixture case through each model's ensemble on a real Triton server and compare
    the outputs within the fixtures' tolerances. Exit code 0 only when every case passed."""
    from mmetools.core.errors import UsageError
    from mmetools.testing.source_test import ModelReport, RunResult, run_models
    from mmetools.rendering.console import report_renderable, summary_text
    from mmetools.rendering.files import check_report_path
    from mmetools.rendering.junit import write_test_junit
    from mmetools.core.settings import load_settings

    folders = [folder.path for folder in _model_folders_of(models or [])]
    if not folders and not artifact:
        raise UsageError("give model folders (e.g. models/*) or --artifact dist/<name>_<v>.tar.gz")
    if junit_xml is not None:
        check_report_path(junit_xml)
    settings = load_settings()

    def show(report: ModelReport) -> None:
        console.print(report_renderable(report), soft_wrap=True)  # paths and log lines stay whole
        if instance_memory is not None and report.memory_before and report.memory_after:
            from mmetools.testing.memory import models_per_instance

            fit = models_per_instance(report.memory_before, report.memory_after, instance_memory)
            console.print(
                f"  {fit.models} model(s) of this size fit in {instance_memory:g} GiB at 80%",
                markup=False,
            )

    runs: list[RunResult] = []
    if folders:
        runs.append(
            run_models(
                folders, settings, mode=mode, image=triton_image, repeat=repeat, on_report=show
            )
        )
    if artifact:
        from mmetools.release.evidence_recording import run_and_record_artifact_tests

        runs.append(
            run_and_record_artifact_tests(
                artifact,
                settings,
                fixtures_dir=fixtures,
                mode=mode,
                image=triton_image,
                repeat=repeat,
                on_report=show,
            )
        )
    run = RunResult(
        tuple(r for each in runs for r in each.reports),
        tuple(s for each in runs for s in each.server_start_seconds),
    )
    console.print(summary_text(run), markup=False)  # before the report: it must not get lost
    if junit_xml is not None:
        write_test_junit(run, junit_xml)
    if not run.passed:
        raise typer.Exit(1)


@app.command("diff")
def diff_command(
    model: Annotated[Path, typer.Argument(help="Model folder, e.g. models/screen_detector.")],
    artifact: Annotated[
        Optional[Path],
        typer.Option("--artifact", help="Candidate tarball (default: the model folder itself)."),
    ] = None,
    against: Annotated[
        str,
        typer.Option(
            "--against",
            help="auto (production, then the branch's staging), staging, "
            "production, or a <name>_<version>.tar.gz to compare with.",
        ),
    ] = "auto",
    branch: Annotated[
        Optional[str], typer.Option("--branch", help="Branch whose staging folder to look in.")
    ] = None,
    dataset: Annotated[
        Optional[Path],
        typer.Option("--dataset", help="More inputs: a folder of *.json cases or a .jsonl file."),
    ] = None,
    markdown: Annotated[
        Optional[Path], typer.Option("--markdown", help="Write the Markdown report here.")
    ] = None,
    junit_xml: Annotated[
        Optional[Path], typer.Option("--junit-xml", help="Write a JUnit XML report here.")
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write the report as JSON here.")
    ] = None,
    mode: TritonModeOption = None,
) -> None:
    """Compare the candidate's predictions with the published previous version's on one Triton
    (SageMaker MME emulation). Exit 1 when an output is over its threshold
    (models/<name>/regression.toml); the first version has nothing to compare and passes."""
    from rich.progress import Progress

    from mmetools.release.diff import diff_against_published
    from mmetools.rendering.json_report import write_diff_json
    from mmetools.rendering.junit import write_diff_junit
    from mmetools.rendering.markdown import markdown_report, write_markdown_report
    from mmetools.model.folder import model_folder
    from mmetools.core.settings import load_settings

    folder = model_folder(model)
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"diff {folder.name}", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=f"diff {folder.name}: {what}", completed=done, total=total)

        report = diff_against_published(
            folder,
            artifact,
            load_settings(),
            against=against,
            branch=branch,
            dataset=dataset,
            mode=mode,
            progress=on_progress,
        )
    if markdown is not None:
        write_markdown_report(report, markdown)
    if junit_xml is not None:
        write_diff_junit(report, junit_xml)
    if json_path is not None:
        write_diff_json(report, json_path)
    console.print(markdown_report(report), markup=False, soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)


def _numbers(text: str, what: str) -> list[float]:
    from mmetools.core.errors import UsageError

    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise UsageError(f"{what} {text!r}: give comma-separated numbers, e.g. 1,2,4") from e
    if any(v <= 0 for v in values):
        raise UsageError(f"{what} {text!r}: every value must be > 0")
    return values


@app.command("loadtest")
def loadtest_command(
    target: Annotated[
        Optional[Path],
        typer.Argument(help="dist/<name>_<version>.tar.gz or a model folder (models/NAME)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for <name>.loadtest.json and .html.")
    ] = Path("dist/loadtest"),
    concurrency: Annotated[
        str, typer.Option("--concurrency", help="Closed-loop concurrency levels.")
    ] = "1,2,4,8,16",
    rates: Annotated[
        str, typer.Option("--rates", help="Fixed request rates (requests/s), '' for none.")
    ] = "",
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, help="Duration of each step.")
    ] = 10.0,
    p99_budget_ms: Annotated[
        float, typer.Option("--p99-budget-ms", min=1, help="Latency budget for the suggestion.")
    ] = 500.0,
    safety_factor: Annotated[
        float, typer.Option("--safety-factor", min=0.01, max=1.0, help="x the sustained rate.")
    ] = 0.5,
    instance_memory: Annotated[
        Optional[float],
        typer.Option("--instance-memory", help="GiB per instance: how many models fit at 80%."),
    ] = None,
    endpoint: Annotated[
        Optional[str], typer.Option("--endpoint", help="A deployed SageMaker endpoint's name.")
    ] = None,
    target_model: Annotated[
        Optional[str], typer.Option("--target-model", help="With --endpoint: the TargetModel.")
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option("--model", help="With --endpoint: model folder whose fixtures to send."),
    ] = None,
    mode: TritonModeOption = None,
) -> None:
    """Cold start, memory, warm latency p50/p90/p99 and throughput at rising concurrency and
    fixed rates (locust), through the local SageMaker frontend or a real endpoint; writes JSON and
    an HTML report with charts, and suggests an InvocationsPerInstance target."""
    import json

    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    from mmetools.core.errors import UsageError
    from mmetools.release.loadtest import loadtest_endpoint, loadtest_local, result_json
    from mmetools.testing.memory import describe_bytes
    from mmetools.model.folder import model_folder, parse_artifact_name
    from mmetools.rendering.html import write_html
    from mmetools.core.settings import load_settings

    levels = [int(v) for v in _numbers(concurrency, "--concurrency")]
    paced = _numbers(rates, "--rates")
    progress = Progress(
        "{task.description}",
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = progress.add_task("loadtest", total=None)

    def on_progress(step: str, done: int, total: int) -> None:
        progress.update(task, description=f"loadtest: {step}", completed=done, total=total)

    with progress:
        if endpoint is not None:
            if not target_model:
                raise UsageError("--endpoint needs --target-model (the artifact name to invoke)")
            folder = model or (target and target.is_dir() and target) or None
            if folder is None:
                ref = parse_artifact_name(Path(target_model))
                folder = load_settings().root / "models" / ref.name
            result = loadtest_endpoint(
                endpoint,
                target_model,
                model_folder(folder),
                concurrency=levels,
                rates=paced,
                seconds=seconds,
                p99_budget_ms=p99_budget_ms,
                safety_factor=safety_factor,
                progress=on_progress,
            )
        else:
            if target is None:
                raise UsageError("give an artifact or a model folder, or --endpoint NAME")
            result = loadtest_local(
                target,
                load_settings(),
                concurrency=levels,
                rates=paced,
                seconds=seconds,
                p99_budget_ms=p99_budget_ms,
                safety_factor=safety_factor,
                instance_memory_gib=instance_memory,
                mode=mode,
                progress=on_progress,
            )
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{result.model}.loadtest.json"
    json_path.write_text(json.dumps(result_json(result), indent=2) + "\n", encoding="utf-8")
    html_path = out / f"{result.model}.loadtest.html"
    write_html(result, html_path)
    cold = result.cold_start
    if cold is not None:
        console.print(
            f"cold start {cold.total_seconds:.2f} s (unpack {cold.unpack_seconds:.2f} s, load "
            f"{cold.load_seconds:.2f} s, first request {cold.first_request_seconds * 1000:.0f} ms)",
            markup=False,
        )
        if cold.memory_before and cold.memory_after:
            console.print(
                f"memory: the model added "
                f"{describe_bytes(cold.memory_after.total - cold.memory_before.total)} "
                f"(server + {cold.memory_after.stubs} stub(s) now "
                f"{describe_bytes(cold.memory_after.total)})",
                markup=False,
            )
    for s in result.steps:
        console.print(
            f"{s.label:<16} {s.requests:>6} req  {s.failures:>3} err  {s.throughput:7.1f} req/s  "
            f"p50 {s.p50_ms:.0f} ms  p90 {s.p90_ms:.0f} ms  p99 {s.p99_ms:.0f} ms",
            markup=False,
        )
    if result.fit is not None:
        console.print(f"models per instance at 80%: {result.fit.models}", markup=False)
    suggestion = result.suggestion
    console.print(
        f"suggested InvocationsPerInstance: {suggestion.invocations_per_instance or 'none'} "
        f"({suggestion.method})",
        markup=False,
        soft_wrap=True,
    )
    console.print(f"wrote {json_path} and {html_path}", markup=False)


@app.command("targets")
def targets_command() -> None:
    """List the Triton releases mmetools knows (Python, interpreter, glibc, GLIBCXX, numpy 2) and
    the target this repository builds for ([target] image, MMETOOLS_TARGET_IMAGE)."""
    from rich.table import Table

    from mmetools.core.settings import load_settings
    from mmetools.core.targets import RELEASES, SOURCE_FRAMEWORK_MATRIX, SOURCE_NUMPY2

    target = load_settings().target
    table = Table(title="NGC / SageMaker Triton releases (tag YY.MM-py3)")
    for column in ("release", "triton", "ubuntu", "python", "interpreter", "glibc", "GLIBCXX",
                   "numpy 2"):  # fmt: skip
        table.add_column(column)
    for release in RELEASES:
        chosen = target.image.rpartition(":")[2].startswith(release.release + "-")
        table.add_row(
            release.release + (" *" if chosen else ""),
            release.triton_version,
            release.ubuntu,
            release.python_version,
            f"/usr/bin/python{release.python_version}",
            release.glibc,
            release.glibcxx,
            "yes" if release.numpy2_supported else "no",
            style="bold" if chosen else "",
        )
    console.print(table)
    console.print(
        f"sources: {SOURCE_FRAMEWORK_MATRIX}; {SOURCE_NUMPY2}", markup=False, soft_wrap=True
    )
    console.print(
        f"target: {target.image}: Triton {target.triton_version}, Python {target.python_version} "
        f"at {target.interpreter_path}, glibc {target.glibc}, GLIBCXX {target.glibcxx}, numpy 2 "
        f"{'supported' if target.numpy2_supported else 'not supported'} ({target.source})",
        markup=False,
        soft_wrap=True,
    )


@app.command("lock")
def lock_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when a lock is missing or stale.")
    ] = False,
) -> None:
    """Write models/<name>/requirements-<python>.lock: requirements.txt resolved with hashes by
    uv for the serving target's Python and platform (the env step installs from it)."""
    from mmetools.build.lock import lock_model
    from mmetools.core.settings import load_settings

    target = load_settings().target
    bad = 0
    for folder in _model_folders_of(models):
        with console.status(f"{folder.name}: resolving for Python {target.python_version}"):
            result = lock_model(folder, target, check=check)
        if result.status in ("missing", "stale"):
            bad += 1
            err_console.print(
                f"{result.path}: {result.status} for Python {target.python_version} on "
                f"{target.manylinux_platform}; run `mmetools lock {folder.path}` and commit it",
                markup=False,
                soft_wrap=True,
            )
        else:
            console.print(f"{result.path}: {result.status}", markup=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@app.command("inspect")
def inspect_command(
    artifacts: Annotated[list[Path], typer.Argument(help="dist/<name>_<version>.tar.gz files.")],
    target_image: Annotated[
        Optional[str],
        typer.Option("--target", help="Audit for this image instead of [target] image."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Audit artifacts against the serving target: the SageMaker layout rules and, for every
    packed env, its Python, interpreter, GLIBC/GLIBCXX needs, ELF architecture, links, numpy and
    sizes. Exit 1 when one has an error."""
    import json

    from rich.table import Table

    from mmetools.build.audit import audit_artifact
    from mmetools.core.settings import load_settings
    from mmetools.core.targets import EXPLICIT_KEYS, resolve_target

    settings = load_settings()
    target = settings.target
    if target_image:
        explicit = {key: getattr(settings.target_settings, key) for key in EXPLICIT_KEYS}
        same = target_image == settings.target_settings.image
        target = resolve_target(target_image, explicit if same else None, where="--target")
    reports = [audit_artifact(path, target) for path in artifacts]
    if as_json:
        console.print_json(json.dumps([report.as_json() for report in reports]))
    else:
        for report in reports:
            table = Table(title=f"{report.name} for {target.image}")
            for column in ("env", "kind", "python", "interpreter", "max GLIBC", "max GLIBCXX",
                           "arch", "numpy", "size", "unpacked"):  # fmt: skip
                table.add_column(column)
            for env in report.envs:
                table.add_row(
                    env.archive, env.kind, env.python_version or "?", env.interpreter or "?",
                    env.max_glibc or "-", env.max_glibcxx or "-", ",".join(env.architectures),
                    env.numpy or "-", f"{env.size / 1e6:.1f} MB", f"{env.unpacked_size / 1e6:.1f} MB",
                )  # fmt: skip
            console.print(table)
            for finding in report.findings:
                style = "red" if finding.severity == "error" else "yellow"
                console.print(f"{finding.severity}: {finding}", style=style, markup=False,
                              soft_wrap=True)  # fmt: skip
            console.print(f"{report.name}: {'ok' if report.ok else 'REFUSED'}")
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


@app.command("build")
def build_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the artifacts (e.g. dist/runs/<run id>).")
    ],
    no_env: Annotated[
        bool, typer.Option("--no-env", help="Ship no packed env (the image's Python serves).")
    ] = False,
    level: Annotated[int, typer.Option("--level", min=0, max=9, help="gzip level.")] = 6,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Deflate threads (default: cores).")
    ] = None,
    mode: TritonModeOption = None,
    triton_image: Annotated[
        Optional[str],
        typer.Option("--triton-image", help="Run NVIDIA's Triton image with docker --gpus all."),
    ] = None,
    junit_xml: Annotated[
        Optional[Path],
        typer.Option("--junit-xml", help="Also write a JUnit XML report (one case per step)."),
    ] = None,
) -> None:
    """The whole pipeline: validate, fetch weights, pack the env, test the folder on Triton,
    package, test the artifact through the SageMaker MME frontend. --out gets, per model that
    passed every step, <name>_<version>.tar.gz, .tar.gz.sha256, .manifest.json and
    .evidence.json (what `mmetools publish` requires); nothing of a model that failed."""
    from mmetools.pipeline import STEP_NAMES, BuildOptions, StepOutcome, TritonOptions, build
    from mmetools.rendering.console import StepRow, step_line, steps_table
    from mmetools.rendering.files import check_report_path
    from mmetools.rendering.junit import write_steps_junit
    from mmetools.core.settings import load_settings

    if junit_xml is not None:
        check_report_path(junit_xml)
    settings = load_settings()
    folders = _model_folders_of(models)

    def row(outcome: StepOutcome) -> StepRow:
        return StepRow(outcome.model, outcome.step, outcome.status, outcome.seconds, outcome.detail)

    def on_step(outcome: StepOutcome) -> None:
        console.print(step_line(row(outcome)), soft_wrap=True)
        if outcome.status == "failed" and "\n" in outcome.detail:
            err_console.print(outcome.detail, markup=False, soft_wrap=True)

    options = BuildOptions(
        with_env=not no_env,
        level=level,
        threads=threads,
        triton=TritonOptions(mode=mode, image=triton_image),
    )
    with console.status("building") if console.is_terminal else _nothing():
        report = build(folders, out, settings, options, on_step=on_step)
    rows = [row(outcome) for outcome in report.outcomes]
    console.print(steps_table(rows, STEP_NAMES, f"mmetools build --out {out}"))
    if junit_xml is not None:
        write_steps_junit(rows, junit_xml, "mmetools build")
    for built in report.artifacts:
        console.print(f"built {built.path}  sha256 {built.sha256[:12]}", markup=False)
    for name in report.failed_models:
        failed = next(o for o in report.outcomes if o.model == name and o.status == "failed")
        err_console.print(
            f"error: {name}: step '{failed.step}' failed: {failed.detail}",
            markup=False,
            soft_wrap=True,
        )
    if not report.passed:
        err_console.print(
            f"{len(report.artifacts)} of {len(report.requested)} model(s) built", markup=False
        )
        raise typer.Exit(1)


def _nothing() -> typing.ContextManager[None]:
    import contextlib

    return contextlib.nullcontext()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (tests call this directly)."""
    try:
        # With standalone_mode=False click returns a typer.Exit's code instead of raising it.
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ValidationFailed as e:
        # soft_wrap: each message stays one line whatever the terminal width, so the paths in it
        # are not broken (rich wraps CI logs at 80 columns) and stay grep-able.
        for problem in e.problems:
            err_console.print(problem, markup=False, soft_wrap=True)
        return e.exit_code
    except MmetoolsError as e:
        err_console.print(f"error: {e}", markup=False, soft_wrap=True)
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # click usage errors (newer typer vendors click as typer._click)
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        raise
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())
