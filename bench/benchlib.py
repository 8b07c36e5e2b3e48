"""What the benchmark scripts share: where results go, medians and percentiles, a Markdown table,
a note of the machine's state, and the JSON file each script writes (bench/results/, gitignored).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
sys.path.insert(0, str(REPO_ROOT / "src"))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], percent: float) -> float:
    """The smallest observed value with at least ``percent`` % of the values at or below it
    (nearest rank: with 20 values p99 is the largest, never an interpolated value)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def repeat(function: Callable[[], Any], reps: int) -> list[float]:
    return [timed(function) for _ in range(reps)]


def seconds(value: float) -> str:
    """1.23 s, 45 ms or 0.8 ms: three significant figures at most, in the unit that reads best."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns (readable in a terminal and in the README)."""
    headers = [str(c).replace("|", "\\|") for c in headers]
    rows = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    widths = [max(len(c) for c in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg()[0],
    }


@contextmanager
def load_note() -> Iterator[dict[str, float]]:
    """Load average before and after a benchmark: other work on the machine shows up here."""
    note = {"before": os.getloadavg()[0]}
    yield note
    note["after"] = os.getloadavg()[0]


def write_results(name: str, data: dict[str, Any]) -> Path:
    """bench/results/<name>.json; prints the `wrote ...` line bench/run reads."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps({**data, "machine": machine()}, indent=2) + "\n")
    os.replace(temporary, path)
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """A moto_server on a free loopback port (the one next to this Python), once it answers."""
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if executable is None:
        raise SystemExit("moto_server not found next to this Python (run ci/bootstrap)")
    port = free_port()
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"moto_server did not start on {url}")
            time.sleep(0.1)
