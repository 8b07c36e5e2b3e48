"""Markdown reports: what a CI system posts on a merge request (``mmetools diff --markdown``).

Pure: a report value in, the text out; writing the file is :func:`write_markdown_report`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmetools.release.diff import DiffReport
from mmetools.release.diff.acceptance import ACCEPTANCE_FILE, accept_command
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
    if report.accepted:
        status = "**PASS** (an accepted change)"
    lines += [
        f"{status}: candidate `{report.candidate}` against {report.previous.role} "
        f"`{report.previous.artifact_name}` over {report.cases} input(s); thresholds: "
        f"{report.thresholds_source}.",
        "",
    ]
    if report.added or report.removed or report.renamed:
        lines += [
            f"Outputs: {_names('added', report.added)}, {_names('removed', report.removed)}, "
            f"renamed: {', '.join(f'{a} -> {b}' for a, b in report.renamed) or 'none'}.",
            "",
        ]
    lines += [
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
        title = "Over threshold:"
        if report.accepted and report.acceptance is not None:
            title = f"Over threshold, accepted after review in `{report.acceptance.path}`:"
        lines += ["", title, ""] + [f"- {v}" for v in report.violations]
    if not report.passed:
        lines += [""] + [line.strip() for line in next_steps(report) if line.strip()]
    lines.append("")
    return "\n".join(lines)


def _names(what: str, names: tuple[str, ...]) -> str:
    return f"{what}: {', '.join(names) or 'none'}"


def next_steps(report: DiffReport) -> list[str]:
    """What to do about a failing diff; the accept command comes last."""
    if report.skipped or report.passed:
        return []
    if report.errors:
        return [
            "Inputs that fail on one version only cannot be accepted: fix them, then rerun "
            "the diff."
        ]
    lines: list[str] = []
    check = report.acceptance
    if check is not None and not check.matched:
        lines.append(f"{check.path} records another change than this diff measures:")
        lines += [f"  - {reason}" for reason in check.reasons]
    lines += [
        "If this change is intended: review the report above, then record it (writes "
        f"{report.model_dir or 'models/' + report.model}/{ACCEPTANCE_FILE}; commit it with the "
        "change):",
        f"  {accept_command(report)}",
    ]
    return lines


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
