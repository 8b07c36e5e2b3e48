"""Markdown reports: what a CI system posts on a merge request (``mmetools diff --markdown``).

Pure: a report value in, the text out; writing the file is :func:`write_markdown_report`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmetools.release.diff import DiffReport
from mmetools.rendering.files import write_report

SHOWN_FLIPS = 50


def _float_text(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def markdown_report(report: DiffReport) -> str:
    """A Markdown summary a CI system can post on a merge request."""
    lines = [f"### mmetools diff: {report.model}", ""]
    if report.skipped:
        lines += [f"Skipped: {report.note}", ""]
        return "\n".join(lines)
    assert report.previous is not None
    status = "**PASS**" if report.passed else "**FAIL**"
    lines += [
        f"{status}: candidate `{report.candidate}` against {report.previous.role} "
        f"`{report.previous.artifact_name}` over {report.cases} input(s); thresholds: "
        f"{report.thresholds_source}.",
        "",
        "| output | kind | elements | max abs | max rel | beyond tol | flips | result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in report.outputs:
        float_kind = o.kind == "float"
        lines.append(
            f"| {o.output} | {o.kind} | {o.elements} | "
            f"{_float_text(o.max_abs) if float_kind else '-'} | "
            f"{_float_text(o.max_rel) if float_kind else '-'} | "
            f"{f'{o.beyond} ({o.beyond_share:.2%})' if float_kind else '-'} | "
            f"{'-' if float_kind else f'{len(o.flips)} ({o.flip_rate:.2%})'} | "
            f"{'pass' if o.passed else 'FAIL'} |"
        )
    lines.append("")
    for o in report.outputs:
        if o.summary:
            lines.append(
                f"- {o.output}: " + ", ".join(f"{k} {_summary(v)}" for k, v in o.summary.items())
            )
    flips = [(o.output, f) for o in report.outputs for f in o.flips]
    if flips:
        lines += [
            "",
            f"Flips ({len(flips)}):",
            "",
            "| output | case | element | previous | candidate |",
        ]
        lines.append("|---|---|---:|---|---|")
        for output, flip in flips[:SHOWN_FLIPS]:
            lines.append(
                f"| {output} | {flip.case} | {flip.index} | {flip.previous} | {flip.candidate} |"
            )
        if len(flips) > SHOWN_FLIPS:
            lines.append(f"| ... {len(flips) - SHOWN_FLIPS} more | | | | |")
    if report.violations:
        lines += ["", "Over threshold:", ""] + [f"- {v}" for v in report.violations]
    lines.append("")
    return "\n".join(lines)


def _summary(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def write_markdown_report(report: DiffReport, path: Path) -> None:
    """The diff's Markdown report at ``path`` (written atomically, folders created)."""
    # backslashreplace: a path argument with a byte that is not UTF-8 (a lone surrogate after
    # os.fsdecode) is shown as \xff instead of failing the write.
    text = markdown_report(report)
    write_report(path, text.encode("utf-8", "backslashreplace"), "Markdown report")
