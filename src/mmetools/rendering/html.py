"""The load test's HTML report: tables and matplotlib charts (PNG, embedded as data URIs, so the
report is one self-contained file a CI system can keep as an artifact)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from mmetools.release.loadtest import LoadStep, LoadTestResult
from mmetools.rendering.files import write_report
from mmetools.testing.memory import describe_bytes

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
"""


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figures(steps: tuple[LoadStep, ...]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")  # no display; explicit so a user's MPLBACKEND cannot change the output
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str]] = []
    closed = [s for s in steps if s.target_rate is None]
    paced = [s for s in steps if s.target_rate is not None]
    if closed:
        users = [s.users for s in closed]
        figure, axes = plt.subplots(figsize=(6, 3.5))
        for key, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")):
            axes.plot(users, [getattr(s, key) for s in closed], marker="o", label=label)
        axes.set_xscale("log", base=2)
        axes.set_xticks(users, [str(u) for u in users])
        axes.set_xlabel("concurrent requests")
        axes.set_ylabel("latency (ms)")
        axes.set_title("Latency vs concurrency")
        axes.grid(True, alpha=0.3)
        axes.legend()
        charts.append(("Latency vs concurrency", _png(figure)))
        plt.close(figure)
        figure, axes = plt.subplots(figsize=(6, 3.5))
        positions = list(range(len(users)))
        axes.bar(positions, [s.throughput for s in closed], color="tab:green")
        axes.set_xticks(positions, [str(u) for u in users])
        axes.set_xlabel("concurrent requests")
        axes.set_ylabel("throughput (requests/s)")
        axes.set_title("Throughput vs concurrency")
        axes.grid(True, axis="y", alpha=0.3)
        charts.append(("Throughput vs concurrency", _png(figure)))
        plt.close(figure)
    if paced:
        figure, axes = plt.subplots(figsize=(6, 3.5))
        rates = [s.target_rate or 0.0 for s in paced]
        axes.plot(rates, [s.throughput for s in paced], marker="o", label="achieved requests/s")
        axes.plot(rates, rates, linestyle="--", color="grey", label="offered")
        twin = axes.twinx()
        twin.plot(rates, [s.p99_ms for s in paced], marker="s", color="tab:red", label="p99 ms")
        axes.set_xlabel("offered rate (requests/s)")
        axes.set_ylabel("requests/s")
        twin.set_ylabel("p99 latency (ms)")
        axes.set_title("Fixed request rates")
        axes.legend(loc="upper left")
        twin.legend(loc="lower right")
        charts.append(("Fixed request rates", _png(figure)))
        plt.close(figure)
    return charts


def _number(value: float, digits: int = 1) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def render_html(result: LoadTestResult) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>mmetools loadtest: {e(result.model)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Load test: {e(result.model)}</h1>",
        f"<p>Source <code>{e(result.source)}</code>, through the {e(result.target)}; "
        f"requests cycle through the fixture cases {e(', '.join(result.requests_per_step))}.</p>",
    ]
    cold = result.cold_start
    if cold is not None:
        parts += [
            "<h2>Cold start</h2><table><tr><th>phase</th><th>seconds</th></tr>",
            f"<tr><td>unpack the tarball</td><td>{cold.unpack_seconds:.3f}</td></tr>",
            f"<tr><td>load (POST /models until ready)</td><td>{cold.load_seconds:.3f}</td></tr>",
            f"<tr><td>first request</td><td>{cold.first_request_seconds:.3f}</td></tr>",
            f"<tr><td><b>total</b></td><td><b>{cold.total_seconds:.3f}</b></td></tr></table>",
        ]
        if cold.memory_before and cold.memory_after:
            b, a = cold.memory_before, cold.memory_after
            parts += [
                "<h2>Memory</h2><table><tr><th></th><th>server RSS</th><th>stubs RSS</th>"
                "<th>stubs</th><th>total</th></tr>",
                *(
                    f"<tr><td>{label}</td><td>{describe_bytes(m.server_rss)}</td>"
                    f"<td>{describe_bytes(m.stubs_rss)}</td><td>{m.stubs}</td>"
                    f"<td>{describe_bytes(m.total)}</td></tr>"
                    for label, m in (("before load", b), ("after load", a))
                ),
                f"<tr><td>the model</td><td colspan='4'>{describe_bytes(a.total - b.total)}"
                + (f", GPU {describe_bytes(a.gpu_used - b.gpu_used)}" if a.gpus else ", no GPU")
                + "</td></tr></table>",
            ]
    if result.fit is not None:
        f = result.fit
        parts.append(
            f"<p>Models of this size per instance of {f.instance_bytes / 1024**3:g} GiB at 80%: "
            f"<b>{f.models}</b> (baseline {describe_bytes(f.baseline_bytes)}, "
            f"{describe_bytes(f.per_model_bytes)} per model).</p>"
        )
    parts += [
        "<h2>Warm requests</h2><table><tr><th>step</th><th>users</th><th>requests</th>"
        "<th>errors</th><th>req/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr>",
        *(
            f"<tr><td>{e(s.label)}</td><td>{s.users}</td><td>{s.requests}</td>"
            f"<td>{s.failures}</td><td>{_number(s.throughput)}</td><td>{_number(s.p50_ms, 0)}</td>"
            f"<td>{_number(s.p90_ms, 0)}</td><td>{_number(s.p99_ms, 0)}</td></tr>"
            for s in result.steps
        ),
        "</table>",
    ]
    for title, uri in _figures(result.steps):
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='{uri}'>")
    s = result.suggestion
    target = "none" if s.invocations_per_instance is None else str(s.invocations_per_instance)
    parts += [
        "<h2>Suggested autoscaling target</h2>",
        f"<p>SageMakerVariantInvocationsPerInstance: <b>{target}</b>"
        + (f" (from {e(s.step or '')}, {s.throughput:.1f} requests/s)" if s.throughput else "")
        + f".</p><p>Method: {e(s.method)}.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(result: LoadTestResult, path: Path) -> None:
    """The HTML report at ``path``, written atomically like every report (a path argument with
    a byte that is not UTF-8 is shown as ``\\xff``, not a UnicodeEncodeError)."""
    data = render_html(result).encode("utf-8", "backslashreplace")
    write_report(path, data, "HTML report")
