"""Commands that release artifacts: ``publish``, ``diff`` and ``loadtest``.

Each parses its arguments, calls the library (with a progress bar on a terminal), prints and
writes what :mod:`mmetools.rendering` draws and exits (1 when a publish failed or an output is
over its threshold); registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmetools.cli.app import TritonModeOption, console, err_console


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
    retest: Annotated[
        bool,
        typer.Option(
            "--retest",
            help="When an artifact's evidence does not verify here (not signed with this "
            "machine's or CI's evidence key, stale, another target), run its SageMaker MME "
            "artifact test on these exact bytes instead of refusing.",
        ),
    ] = False,
    json_path: Annotated[
        Optional[Path],
        typer.Option("--json", help="Write every destination's outcome and URIs as JSON here."),
    ] = None,
) -> None:
    """Publish artifacts to staging and, from the production branch, to production. Versions are
    immutable: same bytes is a no-op, different bytes is refused. Exit 1 when one fails."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

    from mmetools.release.publish import PublishOptions, PublishResult, PublishTarget, publish
    from mmetools.release.storage import MiB, LocalArtifact, S3Tuning
    from mmetools.rendering.files import check_report_path
    from mmetools.rendering.json_report import write_publish_json
    from mmetools.rendering.tables import publish_line, publish_table

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # boto3's INFO lines ("Found credentials in environment variables") are noise here;
        # mmetools logs the endpoint and region it uses itself. -v shows everything.
        for name in ("boto3", "botocore", "s3transfer", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if json_path is not None:
        check_report_path(json_path, "--json")
    options = PublishOptions(
        dry_run=dry_run,
        retest=retest,
        s3=S3Tuning(part_size=part_size * MiB, max_concurrency=concurrency),
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

    def on_result(result: PublishResult) -> None:
        console.print(publish_line(result), markup=False, soft_wrap=True)

    with progress:
        report = publish(
            artifacts, branch, options=options, on_result=on_result, on_progress=on_progress
        )
    console.print(publish_table(report, artifacts, branch, dry_run))
    if json_path is not None:
        write_publish_json(report, branch, dry_run, json_path)
    for failure in report.failures:
        err_console.print(f"error: {failure.message}", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


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
        Optional[str],
        typer.Option(
            "--branch", help="Branch whose staging folder to look in (default: git's current)."
        ),
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
    accept: Annotated[
        bool,
        typer.Option(
            "--accept",
            help="After reviewing the report: record this change in "
            "models/<name>/diff-acceptance.toml (commit it); the diff then passes while it "
            "measures exactly this change again.",
        ),
    ] = False,
    mode: TritonModeOption = None,
) -> None:
    """Compare the candidate's predictions with the version it replaces (production's highest;
    without one, the branch's staging) on one Triton (SageMaker MME emulation). Exit 1 when an
    output is over its threshold (models/<name>/regression.toml) and the change was not
    accepted (--accept); the first version has nothing to compare and passes."""
    from dataclasses import replace

    from rich.progress import Progress

    from mmetools.core.settings import load_settings
    from mmetools.model.folder import model_folder
    from mmetools.release.diff import diff_against_published
    from mmetools.release.diff.acceptance import (
        accept_command,
        check_acceptance,
        record_acceptance,
    )
    from mmetools.rendering.files import check_report_path
    from mmetools.rendering.json_report import write_diff_json
    from mmetools.rendering.junit import write_diff_junit
    from mmetools.rendering.markdown import markdown_report, next_steps, write_markdown_report

    # The report paths before two Triton loads, not after them.
    for option, path in (
        ("--markdown", markdown),
        ("--junit-xml", junit_xml),
        ("--json", json_path),
    ):
        if path is not None:
            check_report_path(path, option)
    folder = model_folder(model)
    if branch is None and against in ("auto", "staging"):
        branch = _git_branch(folder.path)
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
    if accept:
        written = record_acceptance(folder, report, accept_command(report))
        if written is None:
            err_console.print(
                f"{folder.name}: the diff is within its thresholds: nothing to accept"
            )
        else:
            report = replace(report, acceptance=check_acceptance(folder, report))
    if markdown is not None:
        write_markdown_report(report, markdown)
    if junit_xml is not None:
        write_diff_junit(report, junit_xml)
    if json_path is not None:
        write_diff_json(report, json_path)
    console.print(markdown_report(report), markup=False, soft_wrap=True)
    if accept and report.accepted and report.acceptance is not None:
        console.print(
            f"recorded the reviewed change in {report.acceptance.path}: commit it with the change "
            f"(git add {report.acceptance.path})",
            markup=False,
            soft_wrap=True,
        )
    if not report.passed:
        for line in next_steps(report):
            console.print(line, markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _git_branch(where: Path) -> str | None:
    """The checked-out branch (what CI passes as --branch), or None (detached, no git)."""
    import subprocess

    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    name = completed.stdout.strip()
    return name if completed.returncode == 0 and name and name != "HEAD" else None


def bump_command(
    model: Annotated[Path, typer.Argument(help="Model folder, e.g. models/screen_detector.")],
) -> None:
    """Write the next version into models/<name>/model_version.txt: one above both its current
    version and the highest version production holds."""
    from mmetools.core.settings import load_settings
    from mmetools.model.folder import model_folder
    from mmetools.release.versions import bump_version

    folder = model_folder(model)
    bumped = bump_version(folder, load_settings())
    production = (
        f"production holds up to {bumped.production_highest}"
        if bumped.production_highest is not None
        else "production holds no version"
    )
    console.print(
        f"{folder.version_file}: {bumped.before} -> {bumped.after} ({production}); commit it "
        "with the change",
        markup=False,
        soft_wrap=True,
    )


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
    models: Annotated[
        str, typer.Option("--models", help="With --endpoint: a fleet, TargetModels a,b,c.")
    ] = "",
    prefix: Annotated[
        str, typer.Option("--prefix", help="With --endpoint: a fleet, every *.tar.gz of a prefix.")
    ] = "",
    mix: Annotated[
        str,
        typer.Option("--mix", help="Fleet traffic: uniform, zipf:S, or a CSV target_model,rate."),
    ] = "uniform",
    endpoint_url: Annotated[
        str, typer.Option("--endpoint-url", help="The runtime URL (the local endpoint's).")
    ] = "",
    users: Annotated[int, typer.Option("--users", min=1, help="Fleet: concurrent users.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Fleet: the mix's random seed.")] = 0,
    cold_threshold_ms: Annotated[
        float, typer.Option("--cold-threshold-ms", help="Fleet, real endpoint: slower is cold.")
    ] = 1000.0,
    target_hit_ratio: Annotated[
        float, typer.Option("--target-hit-ratio", min=0.0, max=1.0, help="Fleet: for the plan.")
    ] = 0.9,
) -> None:
    """Cold start, memory, warm latency p50/p90/p99 and throughput at rising concurrency and
    fixed rates (locust), through the local SageMaker frontend or a real endpoint; writes JSON and
    an HTML report with charts, and suggests an InvocationsPerInstance target. With --endpoint and
    --models or --prefix: a fleet under a traffic mix (hit ratio, cold and warm latency,
    evictions) and a capacity plan checked against it."""
    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    from mmetools.core.errors import UsageError
    from mmetools.core.settings import load_settings
    from mmetools.release.loadtest import endpoint_model_folder, loadtest_endpoint, loadtest_local
    from mmetools.release.loadtest_options import (
        check_concurrency,
        check_loadtest_options,
        parse_concurrency,
        parse_rates,
    )
    from mmetools.rendering.files import check_output_folder
    from mmetools.rendering.html import write_html
    from mmetools.rendering.json_report import write_loadtest_json
    from mmetools.rendering.tables import loadtest_lines, suggestion_line

    # Every option before any work: a run takes minutes, a bad option must not cost them.
    levels = parse_concurrency(concurrency)
    paced = parse_rates(rates)
    if endpoint is not None and (models or prefix):
        from mmetools.cli.serving import fleet_loadtest

        # The fleet run: one paced rate at most, its users as the concurrency.
        if len(paced) > 1:
            raise UsageError(f"--rates {rates!r}: a fleet load test takes one rate")
        check_concurrency((users,), "--users")
        check_loadtest_options(concurrency=(users,), rates=paced, seconds=seconds,
                               p99_budget_ms=p99_budget_ms, safety_factor=safety_factor)  # fmt: skip
        if not (math.isfinite(cold_threshold_ms) and cold_threshold_ms > 0):
            raise UsageError(f"--cold-threshold-ms {cold_threshold_ms:g}: give a latency above 0")
        check_output_folder(out, "--out")
        fleet_loadtest(
            endpoint, endpoint_url=endpoint_url, models=models, prefix=prefix, mix=mix,
            users=users, seconds=seconds, rate=paced[0] if paced else None, seed=seed,
            cold_threshold_ms=cold_threshold_ms, target_hit_ratio=target_hit_ratio,
            p99_budget_ms=p99_budget_ms, out=out,
        )  # fmt: skip
        return
    check_loadtest_options(concurrency=levels, rates=paced, seconds=seconds,
                           p99_budget_ms=p99_budget_ms, safety_factor=safety_factor,
                           instance_memory_gib=instance_memory)  # fmt: skip
    if endpoint is not None:
        if not target_model:
            raise UsageError("--endpoint needs --target-model (the artifact name to invoke)")
        local_only = {"--instance-memory": instance_memory, "--mode": mode}
        given = [name for name, value in local_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for a local load test, not --endpoint")
    else:
        if target is None:
            raise UsageError("give an artifact or a model folder, or --endpoint NAME")
        if not target.exists():
            raise UsageError(f"{target}: no such artifact or model folder")
        endpoint_only = {"--target-model": target_model, "--model": model,
                         "--models": models or None, "--prefix": prefix or None}  # fmt: skip
        given = [name for name, value in endpoint_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --endpoint NAME")
    check_output_folder(out, "--out")
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
            assert target_model is not None
            folder = model or (target and target.is_dir() and target) or None
            result = loadtest_endpoint(
                endpoint,
                target_model,
                endpoint_model_folder(target_model, folder, load_settings()),
                concurrency=levels,
                rates=paced,
                seconds=seconds,
                p99_budget_ms=p99_budget_ms,
                safety_factor=safety_factor,
                progress=on_progress,
            )
        else:
            assert target is not None
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
    json_path = out / f"{result.model}.loadtest.json"
    write_loadtest_json(result, json_path)
    html_path = out / f"{result.model}.loadtest.html"
    write_html(result, html_path)
    for line in loadtest_lines(result):
        console.print(line, markup=False)
    console.print(suggestion_line(result), markup=False, soft_wrap=True)
    console.print(f"wrote {json_path} and {html_path}", markup=False)
