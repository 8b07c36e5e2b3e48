"""Commands that build artifacts: ``fetch``, ``env``, ``package``, ``build``, ``inspect`` and
``targets``.

Each parses its arguments, calls the library, prints what :mod:`mmetools.rendering` draws and
exits (1 when a model or an artifact failed); registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmetools.cli.app import (
    TritonModeOption,
    console,
    err_console,
    model_folders_of,
    status_while,
)
from mmetools.core.redaction import redact


def env_command(
    models: Annotated[list[Path], typer.Argument(help="Model folders, e.g. models/*.")],
) -> None:
    """Build each model's env (or reuse it from the cache) with what the serving image lacks, and
    place it where its steps' EXECUTION_ENV_PATH points (<name>_env.tar.gz beside the steps);
    no env when the image provides every locked requirement."""
    from mmetools.build.env import pack_env
    from mmetools.core.settings import load_settings

    settings = load_settings()
    for folder in model_folders_of(models):
        with console.status(f"{folder.name}: packing env") as status:
            packed = pack_env(
                folder, settings, progress=lambda m: status.update(f"{folder.name}: {m}")
            )
        if packed is None:
            console.print(
                f"{folder.name}: no env needed (no Python steps, or the serving image provides "
                "every locked requirement)",
                markup=False,
            )
            continue
        how = "from the cache" if packed.cached else "built"
        steps = ", ".join(step.parent.name for step in packed.steps)
        console.print(
            f"{folder.name}: env {packed.env_hash[:12]} ({packed.backend}, Python "
            f"{packed.python_version}, {how}) in {steps}",
            markup=False,
            soft_wrap=True,
        )


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

    from mmetools.core.settings import load_settings
    from mmetools.pipeline import package_model
    from mmetools.rendering.files import check_output_folder

    check_output_folder(out, "--out")  # before the env is packed, not after
    settings = load_settings()
    for folder in model_folders_of(models):
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

    from mmetools.core.errors import DvcError
    from mmetools.core.settings import load_settings
    from mmetools.model.dvc import fetch_weights, tracked_files

    settings = load_settings()
    folders = model_folders_of(models)
    failed = 0
    for folder in folders:
        started = time.perf_counter()
        try:
            with console.status(f"{folder.name}: checking weights against their DVC pointers"):
                tracked = tracked_files(folder)
                fetched = fetch_weights(folder, settings, remote=remote, force=force)
        except DvcError as e:
            failed += 1
            err_console.print(f"error: {redact(str(e))}", markup=False, soft_wrap=True)
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


def targets_command() -> None:
    """List the Triton releases mmetools knows (Python, interpreter, glibc, GLIBCXX, numpy 2) and
    the target this repository builds for ([target] image, MMETOOLS_TARGET_IMAGE)."""
    from mmetools.core.settings import load_settings
    from mmetools.rendering.tables import releases_sources, releases_table, target_line

    target = load_settings().target
    console.print(releases_table(target))
    console.print(releases_sources(), markup=False, soft_wrap=True)
    console.print(target_line(target), markup=False, soft_wrap=True)


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

    from mmetools.build.audit import audit_artifact
    from mmetools.core.settings import load_settings
    from mmetools.core.targets import EXPLICIT_KEYS, IMAGE_PACKAGES_KEY, resolve_target
    from mmetools.rendering.tables import audit_table

    settings = load_settings()
    target = settings.target
    if target_image:
        explicit = {key: getattr(settings.target_settings, key) for key in EXPLICIT_KEYS}
        explicit[IMAGE_PACKAGES_KEY] = settings.target_settings.image_packages
        same = target_image == settings.target_settings.image
        target = resolve_target(target_image, explicit if same else None, where="--target")
    reports = [audit_artifact(path, target) for path in artifacts]
    if as_json:
        console.print_json(json.dumps([report.as_json() for report in reports]))
    else:
        for report in reports:
            console.print(audit_table(report, target))
            for finding in report.findings:
                style = "red" if finding.severity == "error" else "yellow"
                console.print(f"{finding.severity}: {finding}", style=style, markup=False,
                              soft_wrap=True)  # fmt: skip
            console.print(f"{report.name}: {'ok' if report.ok else 'REFUSED'}")
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


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
    skip: Annotated[
        Optional[list[str]],
        typer.Option(
            "--skip",
            help="Leave out a step (repeatable): only `test`, the model folder's Triton test "
            "(the Pants package process does: Pants runs that test as its own process).",
        ),
    ] = None,
) -> None:
    """The whole pipeline: validate, fetch weights, pack the env, test the folder on Triton,
    package, test the artifact through the SageMaker MME frontend. --out gets, per model that
    passed every step, <name>_<version>.tar.gz, .tar.gz.sha256, .manifest.json and
    .evidence.json (what `mmetools publish` requires); nothing of a model that failed."""
    from mmetools.core.settings import load_settings
    from mmetools.pipeline import STEP_NAMES, BuildOptions, StepOutcome, TritonOptions, build
    from mmetools.rendering.console import StepRow, step_line, steps_table
    from mmetools.rendering.files import check_output_folder, check_report_path
    from mmetools.rendering.junit import write_steps_junit

    if junit_xml is not None:
        check_report_path(junit_xml)
    check_output_folder(out, "--out")  # before the tests on Triton, not after
    settings = load_settings()
    folders = model_folders_of(models)

    def row(outcome: StepOutcome) -> StepRow:
        return StepRow(outcome.model, outcome.step, outcome.status, outcome.seconds, outcome.detail)

    def on_step(outcome: StepOutcome) -> None:
        console.print(step_line(row(outcome)), soft_wrap=True)
        if outcome.status == "failed" and "\n" in outcome.detail:
            err_console.print(redact(outcome.detail), markup=False, soft_wrap=True)

    options = BuildOptions(
        with_env=not no_env,
        level=level,
        threads=threads,
        triton=TritonOptions(mode=mode, image=triton_image),
        skip=frozenset(skip or ()),
    )
    with status_while("building"):
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
            f"error: {name}: step '{failed.step}' failed: {redact(failed.detail)}",
            markup=False,
            soft_wrap=True,
        )
    if not report.passed:
        err_console.print(
            f"{len(report.artifacts)} of {len(report.requested)} model(s) built", markup=False
        )
        raise typer.Exit(1)
