"""Rendering steps and Triton test runs for people: rich lines and tables.

The library returns values (step outcomes, Triton test reports); ``mmetools test``,
``mmetools build`` and ``ci/pipeline`` render them here. Steps come in as rows of
(model, step, status, seconds, detail); test reports as source test ``ModelReport``s.
Their JUnit XML is :mod:`mmetools.rendering.junit`; the other commands' tables are
:mod:`mmetools.rendering.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mmetools.model.cases import regen_hint
from mmetools.testing.memory import describe_bytes

if TYPE_CHECKING:
    from mmetools.testing.source_test import ModelReport, RunResult

MARKS = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]"}


@dataclass(frozen=True)
class StepRow:
    model: str
    step: str
    status: str  # "passed", "failed" or "skipped"
    seconds: float
    detail: str = ""


def step_line(row: StepRow) -> str:
    """The one line a step prints as it finishes (rich markup)."""
    extra = f"  ({row.detail.splitlines()[0]})" if row.detail else ""
    return f"{MARKS[row.status]} {row.model:<24} {row.step:<9} {row.seconds:7.1f}s{extra}"


def steps_table(rows: Sequence[StepRow], steps: Sequence[str], title: str) -> Table:
    """One row per model, one column per step: ✓/✗ with its time, or 'skipped'."""
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    for step in steps:
        table.add_column(step, justify="right")
    table.add_column("total", justify="right")
    by_model: dict[str, dict[str, StepRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, {})[row.step] = row
    for model, cells in by_model.items():
        shown = []
        for step in steps:
            cell = cells.get(step)
            if cell is None:
                shown.append("")
            elif cell.status == "skipped":
                shown.append("[yellow]skipped[/]")
            else:
                shown.append(f"{MARKS[cell.status]} {cell.seconds:.1f}s")
        total = sum(c.seconds for c in cells.values())
        table.add_row(model, *shown, f"{total:.1f}s")
    return table


# ------------------------------------------------------------------------------------------------
# Triton test reports (mmetools test, mmetools build)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _error_text(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def _line(text: str, style: str) -> Text:
    """Messages and log lines are not wrapped: paths stay whole, and easy to copy or grep."""
    return Text(text, style=style, no_wrap=True, overflow="ignore")


def report_renderable(report: ModelReport) -> RenderableType:
    """What ``mmetools test`` prints for one model: a table of its cases and outputs, the
    failing values, the Triton log lines behind a load failure, timings. Print it with
    ``soft_wrap=True`` so long paths and log lines are neither wrapped nor cropped."""
    status = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    title = f"{report.name} ({report.source}): {status}"
    parts: list[RenderableType] = [Text.from_markup(title)]
    if report.results or report.not_run:
        table = Table(show_lines=False)
        for column in ("case", "output", "max abs err", "max rel err", "result"):
            table.add_column(column, justify="right" if "err" in column else "left")
        details: list[str] = []
        for result in report.results:
            if result.error is not None:
                table.add_row(result.case.name, "-", "-", "-", "[red]error[/]")
                details.append(f"{result.case.name}: {result.error}")
                continue
            for comparison in result.comparisons:
                table.add_row(
                    result.case.name,
                    comparison.output,
                    _error_text(comparison.max_abs_error),
                    _error_text(comparison.max_rel_error),
                    "[green]pass[/]" if comparison.passed else "[red]FAIL[/]",
                )
                if not comparison.passed:
                    details.append(f"{result.case.name}: {comparison.message}")
        for name in report.not_run:
            table.add_row(name, "-", "-", "-", "[yellow]not run[/]")
        parts.append(table)
        parts.extend(_line(f"  {line}", "red") for line in details)
        if _has_wrong_values(report):
            parts.append(_line(f"  {regen_hint(model_folder_of(report))}", "yellow"))
    if report.error:
        parts.extend(_line(f"  {line}", "red") for line in report.error.splitlines())
    if report.log_lines:
        parts.append(Text("  Triton log:", style="bold"))
        parts.extend(_line(f"    {line}", "dim") for line in report.log_lines)
    if report.load_seconds is not None:
        parts.append(
            Text(
                f"  load {_seconds(report.load_seconds)}, {len(report.latencies)} requests: "
                f"p50 {_milliseconds(report.latency_percentile(50))}, "
                f"p99 {_milliseconds(report.latency_percentile(99))}"
            )
        )
    if report.memory_before is not None and report.memory_after is not None:
        before, after = report.memory_before, report.memory_after
        parts.append(
            Text(
                f"  memory: the model added {describe_bytes(after.total - before.total)} "
                f"(server + {after.stubs} stub(s): {describe_bytes(after.total)})"
            )
        )
    return Group(*parts)


def _has_wrong_values(report: ModelReport) -> bool:
    """Cases that ran and answered differently (not errors): what regenerating would change."""
    return any(not c.passed for r in report.results for c in r.comparisons)


def model_folder_of(report: ModelReport) -> str:
    """The model folder whose fixtures the report's cases are (an artifact's are its model's)."""
    return f"models/{report.name}" if report.source.endswith(".tar.gz") else report.source


def summary_text(run: RunResult) -> str:
    passed = sum(1 for r in run.reports if r.passed)
    starts = ", ".join(_seconds(s) for s in run.server_start_seconds) or "none"
    return f"{passed} of {len(run.reports)} model(s) passed; Triton server start: {starts}"
