"""Rendering the other commands' results for people: rich tables and one-line summaries.

Pure: values from the library in, rich ``Table``s or plain lines out; the CLI prints them
(``mmetools fixtures``, ``publish``, ``staging prune``, ``inspect``, ``targets``,
``loadtest``). Steps and Triton
test reports are :mod:`mmetools.rendering.console`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.markup import escape
from rich.table import Table

from mmetools.build.audit import AuditReport
from mmetools.build.env_audit import EnvAudit
from mmetools.core.targets import (
    RELEASES,
    SOURCE_FRAMEWORK_MATRIX,
    SOURCE_IMAGE_NUMPY,
    SOURCE_NUMPY2,
    ServingTarget,
)
from mmetools.model.cases import CaseResult
from mmetools.model.reference import RegeneratedCase
from mmetools.release.loadtest import LoadTestResult
from mmetools.release.publish import PublishReport, PublishResult
from mmetools.release.staging import StagingFolder
from mmetools.release.storage import describe_size
from mmetools.testing.memory import describe_bytes

# ------------------------------------------------------------------------------------------------
# mmetools fixtures


def regenerated_table(model: str, results: Sequence[RegeneratedCase], dry_run: bool) -> Table:
    """``fixtures regen``: one row per case and output, what changed."""
    table = Table(title=f"{model}: expected values {'(dry run)' if dry_run else ''}")
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
    return table


def regenerated_summary(results: Sequence[RegeneratedCase], dry_run: bool) -> str:
    written = sum(1 for r in results if r.written)
    changed = sum(1 for r in results if r.changed)
    if dry_run:
        return f"{changed} of {len(results)} case(s) would change; nothing written"
    return f"{written} of {len(results)} fixture file(s) rewritten"


def fixture_check_table(model: str, results: Sequence[CaseResult]) -> Table:
    """``fixtures check``: one row per case and output, the reference run against the fixture."""
    table = Table(title=f"{model}: fixtures vs reference run")
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
    return table


def fixture_check_problems(results: Sequence[CaseResult]) -> list[str]:
    """One line per case that could not run or per output that does not match, path first."""
    lines: list[str] = []
    for result in results:
        if result.error is not None:
            lines.append(f"{result.case.path}: {result.error}")
        for comparison in result.comparisons:
            if not comparison.passed:
                lines.append(f"{result.case.path}: {comparison.message}")
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


# ------------------------------------------------------------------------------------------------
# mmetools publish


def publish_line(r: PublishResult) -> str:
    """The line each destination prints as it finishes."""
    return (
        f"{r.action:<9} {r.role:<10} {r.destination}  {describe_size(r.size)}  "
        f"{r.seconds:.2f}s  {r.requests} request(s)  {r.detail}"
    )


def publish_table(
    report: PublishReport, artifacts: Sequence[Path], branch: str, dry_run: bool
) -> Table:
    """One row per artifact and destination; the caption counts the actions."""
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
    return table


# ------------------------------------------------------------------------------------------------
# mmetools inspect, mmetools targets


def staging_table(uri: str, folders: Sequence[StagingFolder], dry_run: bool) -> Table:
    """``mmetools staging prune``: one row per staging folder, its branch and verdict."""
    table = Table(
        title=f"staging folders in {uri}" + (" (dry run)" if dry_run else ""),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("folder", "branch", "verdict", "why"):
        table.add_column(column, no_wrap=column != "why")
    for folder in folders:
        verdict = "[red]prune[/red]" if folder.verdict == "prune" else "keep"
        table.add_row(escape(folder.slug), escape(folder.branch or "-"), verdict,
                      escape(folder.reason))  # fmt: skip
    table.caption = (
        f"{sum(f.verdict == 'prune' for f in folders)} to prune, "
        f"{sum(f.verdict == 'keep' for f in folders)} kept"
    )
    return table


def audit_table(report: AuditReport, target: ServingTarget) -> Table:
    """``inspect``: one row per packed env of the artifact."""
    table = Table(title=f"{report.name} for {target.image}")
    for column in ("env", "kind", "python", "interpreter", "max GLIBC", "max GLIBCXX",
                   "arch", "numpy", "size", "unpacked"):  # fmt: skip
        table.add_column(column)
    for env in report.envs:
        table.add_row(
            env.archive, env.kind, env.python_version or "?", env.interpreter or "?",
            env.max_glibc or "-", env.max_glibcxx or "-", ",".join(env.architectures),
            _numpy_cell(env, target), f"{env.size / 1e6:.1f} MB", f"{env.unpacked_size / 1e6:.1f} MB",
        )  # fmt: skip
    return table


def releases_table(target: ServingTarget) -> Table:
    """``targets``: the Triton releases mmetools knows, the chosen one starred."""
    table = Table(title="NGC / SageMaker Triton releases (tag YY.MM-py3)")
    for column in ("release", "triton", "ubuntu", "python", "interpreter", "glibc", "GLIBCXX",
                   "numpy 2", "image packages"):  # fmt: skip
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
            ", ".join(f"{n}=={v}" for n, v in release.image_packages) or "not recorded",
            style="bold" if chosen else "",
        )
    return table


def _numpy_cell(env: EnvAudit, target: ServingTarget) -> str:
    """The env's numpy, or the image's when the env layers on it (include-system-site-packages)."""
    if env.numpy and "numpy" not in env.from_image:
        return env.numpy
    image = target.image_version("numpy")
    if env.system_site_packages and image is not None:
        return f"{image} (image)"
    return env.numpy or "-"


def releases_sources() -> str:
    return f"sources: {SOURCE_FRAMEWORK_MATRIX}; {SOURCE_NUMPY2}; {SOURCE_IMAGE_NUMPY}"


def target_line(target: ServingTarget) -> str:
    """What the repository builds for, and where that choice comes from."""
    return (
        f"target: {target.image}: Triton {target.triton_version}, Python {target.python_version} "
        f"at {target.interpreter_path}, glibc {target.glibc}, GLIBCXX {target.glibcxx}, numpy 2 "
        f"{'supported' if target.numpy2_supported else 'not supported'}, image packages "
        f"{', '.join(f'{n}=={v}' for n, v in target.image_packages) or 'none known'} "
        f"({target.source})"
    )


# ------------------------------------------------------------------------------------------------
# mmetools loadtest


def loadtest_lines(result: LoadTestResult) -> list[str]:
    """Cold start, memory, one line per step, instance fit and the suggested target."""
    lines: list[str] = []
    cold = result.cold_start
    if cold is not None:
        lines.append(
            f"cold start {cold.total_seconds:.2f} s (unpack {cold.unpack_seconds:.2f} s, load "
            f"{cold.load_seconds:.2f} s, first request {cold.first_request_seconds * 1000:.0f} ms)"
        )
        if cold.memory_before and cold.memory_after:
            lines.append(
                f"memory: the model added "
                f"{describe_bytes(cold.memory_after.total - cold.memory_before.total)} "
                f"(server + {cold.memory_after.stubs} stub(s) now "
                f"{describe_bytes(cold.memory_after.total)})"
            )
    for s in result.steps:
        lines.append(
            f"{s.label:<16} {s.requests:>6} req  {s.failures:>3} err  {s.throughput:7.1f} req/s  "
            f"p50 {s.p50_ms:.0f} ms  p90 {s.p90_ms:.0f} ms  p99 {s.p99_ms:.0f} ms"
        )
    if result.fit is not None:
        lines.append(f"models per instance at 80%: {result.fit.models}")
    return lines


def suggestion_line(result: LoadTestResult) -> str:
    suggestion = result.suggestion
    return (
        f"suggested InvocationsPerInstance: {suggestion.invocations_per_instance or 'none'} "
        f"({suggestion.method})"
    )
