#!/usr/bin/env python3
"""Run every benchmark and write bench/results/summary.md: one table of the numbers that matter.

    bench/run                      # full: 1 GB package and publish, N = 1, 5, 20 models (~25 min)
    bench/run --quick              # smaller inputs, fewer reps (~8 min)
    bench/run --only env triton    # some of them
    bench/run --summary-only       # rebuild summary.md from the last results

Each benchmark is its own script (bench/bench_*.py) that prints its full table and writes its JSON
to bench/results/; this runs them one after the other (never in parallel: they would slow each
other down) and summarizes their JSON. The summary names the mode each number comes from.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import REPO_ROOT, RESULTS, median, seconds, table

Summary = list[tuple[str, str, str, str]]  # (benchmark, measured, mmetools, compared with)
LATEST = RESULTS / "latest.json"  # benchmark -> its last JSON file and how it was run


def _rate(value: float) -> str:
    return f"{value:.0f} MB/s"


def summarize_package(data: dict[str, Any]) -> Summary:
    rows = {row["method"]: row for row in data["rows"]}
    tar = rows.get("tar -czf")
    pigz = next((r for name, r in rows.items() if "pigz" in name), None)
    ours = [r for name, r in rows.items() if name.startswith("mmetools")]
    default = [r for r in ours if "level 6" in r["method"]] or ours

    def threads(row: dict[str, Any]) -> int:
        digits = row["method"].rsplit(",", 1)[-1].split()[0]
        return int(digits) if digits.isdigit() else 0

    best = max(default, key=threads)
    compared = []
    for other in (tar, pigz):
        if other is not None:
            compared.append(
                f"{other['method']}: {_rate(other['mb_per_s'])} "
                f"(mmetools x{other['median_s'] / best['median_s']:.2f})"
            )
    return [
        (
            "package",
            f"{data['size_mb']} MB of {data['data']} weights to .tar.gz, {data['cores']} cores",
            f"{_rate(best['mb_per_s'])} ({best['method'].removeprefix('mmetools ')})",
            "; ".join(compared),
        )
    ]


def summarize_publish(data: dict[str, Any]) -> Summary:
    methods = data["methods"]
    ours, baseline = methods[0], next(m for m in methods if "defaults" in m["method"])
    size = data["size_bytes"] / (1 << 20)
    noop = data["noop_republish"]
    return [
        (
            "publish",
            f"{size:.0f} MiB artifact to S3 (moto_server on loopback)",
            f"{ours['mb_per_s']:.0f} MiB/s",
            f"boto3 upload_file defaults (= aws s3 cp): {baseline['mb_per_s']:.0f} MiB/s "
            f"(mmetools x{ours['ratio_vs_aws_s3_cp']:.2f})",
        ),
        (
            "publish",
            # HEAD of the artifact, then its .sha256 sidecar checked against it (issue 11).
            "no-op re-publish of the same artifact (target: 2 requests, < 100 ms)",
            f"{noop['requests']} requests, {seconds(noop['median_s_check'])} "
            f"({seconds(noop['median_s_cli_process'])} for the whole CLI process)",
            "",
        ),
    ]


def summarize_env(data: dict[str, Any]) -> Summary:
    rows = {row["method"]: row["median_s"] for row in data["rows"]}
    hand = next((value for name, value in rows.items() if name.startswith("by hand")), None)
    what = f"{data['model']} env ({data['backend']}, {data['archive_mb']:.0f} MB)"
    return [
        (
            "env",
            f"{what}, cache hit (target < 1 s)",
            f"{seconds(rows['cache hit, fresh checkout (copy into each step)'])} (copied into "
            f"{data['python_steps']} steps); {seconds(rows['cache hit, steps up to date'])} "
            "when up to date",
            f"first build: {seconds(rows['first build (empty env cache)'])}",
        ),
        (
            "env",
            f"{what}, first build",
            seconds(rows["first build (empty env cache)"]),
            "" if hand is None else f"by hand (venv, pip install, venv-pack): {seconds(hand)}",
        ),
    ]


def summarize_pipeline(data: dict[str, Any]) -> Summary:
    summary: Summary = []
    for r in data["results"]:
        plural = "model" if r["models"] == 1 else "models"
        summary.append(
            (
                "pipeline",
                f"CI pipeline on {r['models']} {plural}: no-op re-run / one model changed",
                f"{seconds(median(r['noop_s']))} ({r['noop_models']} models run) / "
                f"{seconds(median(r['one_model_s']))} ({r['one_model_models']} model run)",
                f"full run: {seconds(r['full_s'])}; one-model run / that model's steps in "
                f"the full run: {r['one_model_vs_its_steps']:.2f}",
            )
        )
    return summary


def summarize_triton(data: dict[str, Any]) -> Summary:
    summary: Summary = []
    for m in data["models"]:
        packed = m["load_packed_env_s"]
        warm = m.get("warm_p99_s")
        summary.append(
            (
                "triton",
                f"{m['model']}: server start; load; latency p50 / p99 ({m['requests']} requests)",
                f"{seconds(median(m['server_start_s']))}; {seconds(packed[0])} first (unpacks "
                f"the env), {seconds(median(packed[1:] or packed))} after; "
                f"{seconds(m['p50_s'])} / {seconds(m['p99_s'])}"
                + (f" ({seconds(warm)} warm)" if warm is not None else ""),
                f"in-process reference run: {seconds(median(m['in_process_per_case_s']))} "
                "per case",
            )
        )
    return summary


BENCHMARKS: dict[str, tuple[str, Callable[[dict[str, Any]], Summary]]] = {
    "package": ("bench_package.py", summarize_package),
    "publish": ("bench_publish.py", summarize_publish),
    "env": ("bench_env.py", summarize_env),
    "pipeline": ("bench_pipeline.py", summarize_pipeline),
    "triton": ("bench_triton.py", summarize_triton),
}


def run_benchmark(script: str, quick: bool) -> Path | None:
    """Run one script, streaming its output; the JSON it wrote (its last `wrote PATH` line)."""
    argv = [sys.executable, str(REPO_ROOT / "bench" / script), *(["--quick"] if quick else [])]
    print(f"\n=== {' '.join(Path(a).name if a.endswith('.py') else a for a in argv[1:])}",
          flush=True)  # fmt: skip
    written: Path | None = None
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            if line.startswith("wrote "):
                path = Path(line.split(" ", 1)[1].strip())
                written = path if path.is_absolute() else REPO_ROOT / path
    if process.returncode != 0:
        print(f"{script} failed with exit code {process.returncode}")
        return None
    return written


def write_summary(latest: dict[str, Any]) -> Path:
    rows: Summary = []
    modes = set()
    for name, (_, summarize) in BENCHMARKS.items():
        entry = latest.get(name)
        if entry is None or not (REPO_ROOT / entry["json"]).is_file():
            continue
        modes.add(entry["mode"])
        data = json.loads((REPO_ROOT / entry["json"]).read_text())
        for benchmark, what, result, compared in summarize(data):
            rows.append((f"{benchmark} ({entry['mode']})", what, result, compared))
    stamps = sorted(entry["date"] for entry in latest.values())
    command = "bench/run --quick" if modes == {"quick"} else "bench/run"
    text = (
        "# mmetools benchmarks\n\n"
        f"`{command}` ({', '.join(sorted(modes))} mode), {stamps[0] if stamps else '-'}"
        f"{' to ' + stamps[-1] if len(stamps) > 1 else ''}, on {os.cpu_count()} cores. "
        "Medians of the repetitions each script states; ratios come from the same run.\n\n"
        + table(("benchmark", "measured", "mmetools", "compared with (same run)"), rows)
        + "\n\nPipeline: `ci/pipeline.py --no-pants --detect git --skip-quality` in a temporary git"
        " repository of generated model copies, whole process timed (Pants' own cache not"
        " measured). Triton: the bundled CPU server, KServe HTTP frontend. Details and every"
        " repetition: bench/results/*.json.\n"
    )
    path = RESULTS / "summary.md"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, fewer reps")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--summary-only", action="store_true", help="only rebuild summary.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest: dict[str, Any] = json.loads(LATEST.read_text()) if LATEST.is_file() else {}
    failed = []
    if not args.summary_only:
        for name in args.only or list(BENCHMARKS):
            script = BENCHMARKS[name][0]
            written = run_benchmark(script, args.quick)
            if written is None:
                failed.append(name)
                continue
            latest[name] = {
                "json": written.relative_to(REPO_ROOT).as_posix(),
                "mode": "quick" if args.quick else "full",
                "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            }
            LATEST.write_text(json.dumps(latest, indent=2) + "\n")
    summary = write_summary(latest)
    print(f"\n{summary.read_text()}\nwrote {summary.relative_to(REPO_ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
