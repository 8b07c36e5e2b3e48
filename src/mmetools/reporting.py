"""Rendering step results for people and for CI: a rich summary table and JUnit XML.

One place for both front-ends: ``mmetools build`` and ``ci/pipeline`` hand in rows of
(model, step, status, seconds, detail); the library itself only returns values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from rich.table import Table

from mmetools.atomic import write_bytes_atomically

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
    suites = ElementTree.Element("testsuites", name=name)
    by_model: dict[str, list[StepRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=model,
            tests=str(len(model_rows)),
            failures=str(sum(r.status == "failed" for r in model_rows)),
            skipped=str(sum(r.status == "skipped" for r in model_rows)),
            time=f"{sum(r.seconds for r in model_rows):.3f}",
        )
        for row in model_rows:
            case = ElementTree.SubElement(
                suite, "testcase", classname=model, name=row.step, time=f"{row.seconds:.3f}"
            )
            if row.status == "failed":
                first = row.detail.splitlines()[0] if row.detail else "failed"
                failure = ElementTree.SubElement(case, "failure", message=first)
                failure.text = row.detail
            elif row.status == "skipped":
                ElementTree.SubElement(case, "skipped", message=row.detail)
    ElementTree.indent(suites)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)
    write_bytes_atomically(path, data + b"\n")
