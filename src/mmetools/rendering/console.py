"""Rendering results for people and for CI: rich tables and JUnit XML, in one place.

The library returns values (step outcomes, Triton test reports); ``mmetools test``,
``mmetools build`` and ``ci/pipeline`` render them here. Steps come in as rows of
(model, step, status, seconds, detail); test reports as harness ``ModelReport``s.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mmetools.core.atomic import write_bytes_atomically
from mmetools.core.errors import MmetoolsError, UsageError
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


def write_steps_junit(rows: Sequence[StepRow], path: Path, name: str) -> None:
    """One testsuite per model, one testcase per step (written atomically)."""
    suites = ET.Element("testsuites", name=name)
    by_model: dict[str, list[StepRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=model,
            tests=str(len(model_rows)),
            failures=str(sum(r.status == "failed" for r in model_rows)),
            skipped=str(sum(r.status == "skipped" for r in model_rows)),
            time=f"{sum(r.seconds for r in model_rows):.3f}",
        )
        for row in model_rows:
            case = ET.SubElement(
                suite, "testcase", classname=model, name=row.step, time=f"{row.seconds:.3f}"
            )
            if row.status == "failed":
                first = row.detail.splitlines()[0] if row.detail else "failed"
                failure = ET.SubElement(case, "failure", message=first)
                failure.text = row.detail
            elif row.status == "skipped":
                ET.SubElement(case, "skipped", message=row.detail)
    _write_xml(suites, path)


def _write_xml(root: ET.Element, path: Path) -> None:
    """The one JUnit file writer: indented, UTF-8, written atomically."""
    ET.indent(root)
    _write_report(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


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
            parts.append(_line(f"  {regen_hint(_model_folder_of(report))}", "yellow"))
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


def _model_folder_of(report: ModelReport) -> str:
    # An artifact's fixtures come from its model folder.
    return f"models/{report.name}" if report.source.endswith(".tar.gz") else report.source


def summary_text(run: RunResult) -> str:
    passed = sum(1 for r in run.reports if r.passed)
    starts = ", ".join(_seconds(s) for s in run.server_start_seconds) or "none"
    return f"{passed} of {len(run.reports)} model(s) passed; Triton server start: {starts}"


def write_test_junit(run: RunResult, path: Path) -> None:
    """A JUnit XML report: one testsuite per model, one testcase per fixture case (a model that
    could not be loaded is one errored testcase named 'load'). Written atomically."""
    root = ET.Element("testsuites", name="mmetools test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for report in run.reports:
        suite = ET.SubElement(root, "testsuite", name=report.name)
        counts = {"tests": 0, "failures": 0, "errors": 0}
        share = (sum(report.latencies) / len(report.results)) if report.results else 0.0
        for result in report.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"mmetools.{report.name}",
                name=result.case.name,
                time=f"{share:.4f}",
            )
            counts["tests"] += 1
            if result.error is not None:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=result.error).text = result.error
            elif not result.passed:
                counts["failures"] += 1
                messages = [c.message for c in result.comparisons if not c.passed]
                messages.append(regen_hint(_model_folder_of(report)))
                ET.SubElement(case, "failure", message=messages[0]).text = "\n".join(messages)
        for name in report.not_run:
            case = ET.SubElement(suite, "testcase", classname=f"mmetools.{report.name}", name=name)
            counts["tests"] += 1
            counts["errors"] += 1
            ET.SubElement(case, "error", message="not run: the server died").text = report.error
        if report.error and not report.not_run:
            case = ET.SubElement(
                suite, "testcase", classname=f"mmetools.{report.name}", name="load"
            )
            counts["tests"] += 1
            counts["errors"] += 1
            detail = "\n".join([report.error, *report.log_lines])
            ET.SubElement(case, "error", message=report.error.splitlines()[0]).text = detail
        suite.set("time", f"{(report.load_seconds or 0.0) + sum(report.latencies):.4f}")
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    _write_xml(root, path)


def check_report_path(path: Path, option: str = "--junit-xml") -> None:
    """UsageError unless a report can be written at ``path`` (missing folders are created):
    checked before any test runs, so a typo costs neither the run nor its summary."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name such as report.xml")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise UsageError(f"{option} {path}: not writable")


def _write_report(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, data)
    except OSError as e:
        raise MmetoolsError(f"{path}: cannot write the JUnit XML report: {e.strerror or e}") from e
