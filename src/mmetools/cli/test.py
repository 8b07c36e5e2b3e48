"""``mmetools test``: model folders on a real Triton, artifacts through its SageMaker frontend.

Parses, calls :func:`mmetools.testing.source_test.run_models` and
:func:`mmetools.release.evidence_recording.run_and_record_artifact_tests` (which records the
artifacts' evidence), prints each report as it comes, writes the JUnit XML and exits 1 unless
every case passed; registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmetools.cli.app import TritonModeOption, console, model_folders_of


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
    from mmetools.core.settings import load_settings
    from mmetools.release.evidence_recording import run_and_record_artifact_tests
    from mmetools.rendering.console import report_renderable, summary_text
    from mmetools.rendering.files import check_report_path
    from mmetools.rendering.junit import write_test_junit
    from mmetools.testing.memory import check_instance_memory
    from mmetools.testing.source_test import ModelReport, RunResult, run_models

    folders = [folder.path for folder in model_folders_of(models or [])]
    if not folders and not artifact:
        raise UsageError("give model folders (e.g. models/*) or --artifact dist/<name>_<v>.tar.gz")
    if junit_xml is not None:
        check_report_path(junit_xml)
    check_instance_memory(instance_memory)
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
