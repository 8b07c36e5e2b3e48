"""The fleet load test and capacity plan for people: summary lines and the HTML report with
charts (latency over time, warm vs cold, per model)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from mmetools.rendering.html import _STYLE, _png
from mmetools.serving.capacity import CapacityPlan
from mmetools.serving.fleet import FleetResult


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0f} ms"


def _ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1%}"


def fleet_lines(result: FleetResult) -> list[str]:
    s = result.step
    lines = [
        f"fleet load test of endpoint {result.endpoint}: {len(result.mix.models)} models, "
        f"{result.mix.description}, {s.users} users, {s.seconds:g} s",
        f"  requests {result.requests} ({s.throughput:.1f}/s), errors {sum(result.errors.values())}"
        + (f" {result.errors}" if result.errors else "")
        + f", wrong outputs {result.wrong_outputs}",
        f"  hit ratio {_ratio(result.hit_ratio)}, waited for a load {_ratio(result.waited_share)} "
        f"(classified by {result.classified_by})",
        f"  warm p50 {_ms(result.warm.p50_ms)} p99 {_ms(result.warm.p99_ms)} "
        f"({result.warm.requests}); cold p50 {_ms(result.cold.p50_ms)} "
        f"p99 {_ms(result.cold.p99_ms)} ({result.cold.requests})",
    ]
    if result.evictions_per_minute is not None:
        lines.append(
            f"  evictions {result.evictions} ({result.evictions_per_minute:.1f}/min), model "
            f"budget {(result.budget_bytes or 0) / 2**20:.0f} MiB"
        )
    if result.predicted_hit_ratio is not None:
        lines.append(
            f"  capacity check: predicted hit ratio {_ratio(result.predicted_hit_ratio)} (LRU "
            f"simulation of {result.requests} requests; steady state "
            f"{_ratio(result.steady_hit_ratio)}), measured {_ratio(result.hit_ratio)}: "
            f"{abs(result.predicted_hit_ratio - result.hit_ratio) * 100:.1f} points apart"
        )
    return lines


def plan_lines(plan: CapacityPlan) -> list[str]:
    lines = [
        f"capacity plan for {plan.request_rate:.1f} requests/s, {plan.mix}, target hit ratio "
        f"{plan.target_hit_ratio:g} (required {plan.required_hit_ratio:g}), p99 budget "
        f"{plan.p99_budget_ms:g} ms"
    ]
    if plan.chosen is None:
        lines.append("  no fleet found")
    else:
        c = plan.chosen
        lines.append(
            f"  {c.instances} instance(s) of {c.instance_gib} GiB ({c.model_capacity_bytes / 2**30:.1f}"
            f" GiB for models each): predicted hit ratio {c.hit_ratio:.1%}"
        )
    target = plan.invocations_per_instance
    lines.append(
        f"  SageMakerVariantInvocationsPerInstance: {target if target is not None else '-'}; "
        f"ModelCacheSetting: {plan.model_cache_setting}"
    )
    lines += [f"  - {reason}" for reason in plan.reasons]
    return lines


def _charts(result: FleetResult) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    if result.timeline:
        figure, axes = plt.subplots(figsize=(6, 3.5))
        for hit, colour, label in ((True, "tab:green", "warm"), (False, "tab:red", "cold")):
            points = [(t, ms) for t, ms, h in result.timeline if h == hit]
            if points:
                xs, ys = [t for t, _ in points], [ms for _, ms in points]
                axes.scatter(xs, ys, s=8, color=colour, label=label)
        axes.set_yscale("log")
        axes.set_xlabel("seconds into the run")
        axes.set_ylabel("latency (ms)")
        axes.set_title("Requests over time")
        axes.legend()
        charts.append(("Requests over time", _png(figure)))
        plt.close(figure)
    names = list(result.per_model)
    if names:
        figure, axes = plt.subplots(figsize=(6, 3.5))
        positions = list(range(len(names)))
        axes.bar(positions, [result.per_model[n]["requests"] for n in names], color="tab:blue")
        twin = axes.twinx()
        twin.plot(
            positions, [result.per_model[n]["hit_ratio"] for n in names], "o", color="tab:orange"
        )
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("hit ratio")
        axes.set_xticks(positions, [n.removesuffix(".tar.gz") for n in names], rotation=90)
        axes.set_ylabel("requests")
        axes.set_title("Requests and hit ratio per TargetModel")
        charts.append(("Per TargetModel", _png(figure)))
        plt.close(figure)
    return charts


def render_fleet_html(result: FleetResult, plan: CapacityPlan | None) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>fleet load test: {e(result.endpoint)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Fleet load test: {e(result.endpoint)}</h1>",
        *(f"<p>{e(line.strip())}</p>" for line in fleet_lines(result)),
        "<table><tr><th>TargetModel</th><th>requests</th><th>hit ratio</th><th>warm p50</th>"
        "<th>warm p99</th></tr>",
        *(
            f"<tr><td>{e(n)}</td><td>{m['requests']:.0f}</td><td>{_ratio(m['hit_ratio'])}</td>"
            f"<td>{_ms(m['warm_p50_ms'])}</td><td>{_ms(m['warm_p99_ms'])}</td></tr>"
            for n, m in result.per_model.items()
        ),
        "</table>",
    ]
    for title, uri in _charts(result):
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='{uri}'>")
    if plan is not None:
        parts += [
            "<h2>Capacity plan</h2>",
            *(f"<p>{e(line.strip())}</p>" for line in plan_lines(plan)),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_fleet_html(result: FleetResult, plan: CapacityPlan | None, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_fleet_html(result, plan), encoding="utf-8")
