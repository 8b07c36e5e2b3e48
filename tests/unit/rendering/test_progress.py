"""A long step talks while it runs (rendering/progress.py): heartbeat lines outside a terminal,
a live status line on one."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from mmetools.rendering.progress import elapsed_text, heartbeat_line, step_progress


def test_outside_a_terminal_a_slow_step_prints_heartbeat_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    with step_progress(console, "quality", interval=0.05):
        time.sleep(0.3)  # a fake slow step
    text = out.getvalue()
    assert text.startswith("▶ quality: started\n")
    assert "… quality: still running after 0 s" in text


def test_a_quick_step_prints_only_its_start() -> None:
    out = io.StringIO()
    with step_progress(Console(file=out, color_system=None), "build alpha", interval=30):
        pass
    assert out.getvalue() == "▶ build alpha: started\n"


def test_on_a_terminal_the_status_line_is_live_and_leaves_nothing_behind() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with step_progress(console, "quality", interval=0.05):
        time.sleep(0.2)
    assert "still running" not in out.getvalue()  # no heartbeat lines on a terminal
    assert "quality" in out.getvalue()  # the spinner's line was drawn


def test_elapsed_text_and_line() -> None:
    assert elapsed_text(7.9) == "7 s"
    assert elapsed_text(228) == "3 min 48 s"
    assert heartbeat_line("quality", 228) == "… quality: still running after 3 min 48 s"


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        with step_progress(Console(file=io.StringIO()), "x", interval=0):
            pass
