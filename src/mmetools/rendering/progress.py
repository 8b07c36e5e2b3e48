"""A long step that talks while it runs: a live line on a terminal, a heartbeat in a CI log.

On a terminal (rich), :func:`step_progress` shows a spinner with the step and its elapsed time,
updated every second, gone when the step ends. Anywhere else (a CI log, a pipe) it prints a
``started`` line, then one line every ``interval`` seconds naming the step and the time since it
started, so a log never stays silent longer than that (a cold runner's quality step once showed
nothing for 228 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

# CI systems and people give up on a silent log after a minute or so; 20 s keeps every gap
# under the promised 30 s even on a loaded runner.
HEARTBEAT_SECONDS = 20.0


def elapsed_text(seconds: float) -> str:
    """``7 s``, ``3 min 48 s``."""
    whole = int(seconds)
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{whole} s"


def heartbeat_line(label: str, seconds: float) -> str:
    return f"… {label}: still running after {elapsed_text(seconds)}"


@contextmanager
def step_progress(
    console: Console,
    label: str,
    *,
    interval: float = HEARTBEAT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Show that ``label`` is running for as long as the block runs (see the module docstring)."""
    if interval <= 0:
        raise ValueError(f"heartbeat interval must be positive, got {interval}")
    started = clock()
    stop = threading.Event()
    if console.is_terminal:
        status = console.status(f"{label} …")

        def tick() -> None:
            while not stop.wait(1.0):
                status.update(f"{label} … {elapsed_text(clock() - started)}")

        context = status
    else:
        console.print(f"▶ {label}: started", markup=False, highlight=False, soft_wrap=True)

        def tick() -> None:
            while not stop.wait(interval):
                line = heartbeat_line(label, clock() - started)
                console.print(line, markup=False, highlight=False, soft_wrap=True)

        context = None
    thread = threading.Thread(target=tick, name=f"progress {label}", daemon=True)
    if context is not None:
        context.start()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if context is not None:
            context.stop()


__all__ = ["HEARTBEAT_SECONDS", "elapsed_text", "heartbeat_line", "step_progress"]
