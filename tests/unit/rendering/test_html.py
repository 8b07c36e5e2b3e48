"""The load test's HTML report: tables, embedded PNG charts, the suggested target."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from mmetools.release.loadtest import ColdStart, LoadStep, LoadTestResult, Suggestion
from mmetools.testing.memory import MemorySample
from mmetools.rendering.html import render_html, write_html

MiB = 1024 * 1024


def _result(steps: tuple[LoadStep, ...]) -> LoadTestResult:
    cold = ColdStart(
        0.2, 3.5, 0.05, MemorySample(30 * MiB, 0, 0), MemorySample(40 * MiB, 300 * MiB, 3)
    )
    return LoadTestResult(
        "demo",
        "dist/demo_1.tar.gz",
        "local SageMaker frontend",
        cold,
        steps,
        Suggestion(1800, 60.0, "concurrency 2", "the method"),
        500.0,
    )


STEPS = (
    LoadStep("concurrency 1", 1, None, 10, 300, 0, 30.0, 30, 40, 50, 33),
    LoadStep("concurrency 2", 2, None, 10, 600, 0, 60.0, 31, 45, 70, 34),
    LoadStep("rate 5/s", 2, 5.0, 10, 50, 0, 5.0, 30, 40, 45, 32),
)


def _pngs(html: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    ]


def test_report_embeds_three_png_charts_and_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "out" / "demo.loadtest.html"
    write_html(_result(STEPS), path)
    html = path.read_text()
    images = _pngs(html)
    assert len(images) == 3 and all(i.startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "<b>1800</b>" in html and "from concurrency 2, 60.0 requests/s" in html
    assert "<b>3.750</b>" in html  # cold start total: unpack + load + first request
    assert "310.0 MiB" in html  # the model's memory: after - before


def test_charts_follow_the_steps() -> None:
    closed_only = _pngs(render_html(_result(STEPS[:2])))
    assert len(closed_only) == 2  # no fixed-rate chart without fixed-rate steps
    assert _pngs(render_html(_result(()))) == []
    assert "none" in render_html(
        LoadTestResult("demo", "x", "endpoint e", None, (), Suggestion(None, None, None, "m"), 1)
    )


def test_the_same_result_renders_the_same_bytes() -> None:
    # No timestamps or software versions in the PNGs: a report is a function of its figures.
    assert render_html(_result(STEPS)) == render_html(_result(STEPS))
