#!/usr/bin/env python3
"""Benchmark: mmetools' deterministic .tar.gz writer against `tar -czf` and `tar | pigz`.

Builds a model-like folder holding one weight file of SIZE MB (incompressible random bytes by
default, or Gaussian float32 like trained weights with --data gaussian), then times each method
REPS times (page cache warm: one untimed warm-up read first) and prints a table of medians.
Results go to bench/results/bench_package-<data>-<size>MB.json.

    .venv/bin/python bench/bench_package.py                 # 1024 MB, 5 reps
    .venv/bin/python bench/bench_package.py --quick         # 64 MB, 3 reps (CI smoke)
    .venv/bin/python bench/bench_package.py --size-mb 256 --levels 1 6 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmetools.build.package import Member, write_tarball  # noqa: E402
from mmetools.build.parallel_gzip import DEFLATE_LIBRARY  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 64 << 20


def make_payload(folder: Path, size_mb: int, data: str) -> Path:
    step = folder / "demo_inferencer"
    (step / "1").mkdir(parents=True)
    (step / "config.pbtxt").write_text('name: "demo_inferencer"\nplatform: "onnxruntime_onnx"\n')
    weights = step / "1" / "model.onnx"
    rng = np.random.default_rng(0)
    remaining = size_mb << 20
    with weights.open("wb") as stream:
        while remaining:
            n = min(CHUNK, remaining)
            if data == "random":
                stream.write(rng.bytes(n))
            else:
                stream.write(rng.standard_normal(n // 4, dtype=np.float32).tobytes())
            remaining -= n
    return step


def members_of(step: Path) -> list[Member]:
    weights = step / "1" / "model.onnx"
    config = step / "config.pbtxt"
    return [
        Member("demo_inferencer", "dir", step),
        Member("demo_inferencer/1", "dir", step / "1"),
        Member("demo_inferencer/1/model.onnx", "file", weights, weights.stat().st_size),
        Member("demo_inferencer/config.pbtxt", "file", config, config.stat().st_size),
    ]


def mmetools_method(level: int, threads: int) -> Callable[[Path, Path], None]:
    def run(folder: Path, output: Path) -> None:
        with output.open("wb") as stream:
            write_tarball(
                members_of(folder / "demo_inferencer"), stream, level=level, threads=threads
            )

    return run


def tar_gzip(folder: Path, output: Path) -> None:
    subprocess.run(["tar", "-C", str(folder), "-czf", str(output), "."], check=True)


def tar_pigz(threads: int) -> Callable[[Path, Path], None]:
    def run(folder: Path, output: Path) -> None:
        with output.open("wb") as stream:
            tar = subprocess.Popen(
                ["tar", "-C", str(folder), "-cf", "-", "."], stdout=subprocess.PIPE
            )
            pigz = subprocess.run(["pigz", "-p", str(threads)], stdin=tar.stdout, stdout=stream)
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() or pigz.returncode:
                raise RuntimeError("tar | pigz failed")

    return run


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its waited-for children (tar, pigz)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--data", choices=("random", "gaussian"), default="random")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--quick", action="store_true", help="64 MB, 3 reps")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the data")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.reps = 64, 3
    cores = os.cpu_count() or 1

    methods: dict[str, Callable[[Path, Path], None]] = {"tar -czf": tar_gzip}
    if shutil.which("pigz"):
        methods[f"tar -cf - | pigz -p{cores}"] = tar_pigz(cores)
    else:
        print("pigz not on PATH: skipping the pigz baseline (apt-get install pigz)")
    for level in args.levels:
        for threads in args.threads:
            methods[f"mmetools level {level}, {threads} thread(s)"] = mmetools_method(
                level, threads
            )

    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-package-") as temp:
        folder = Path(temp) / "model"
        make_payload(folder, args.size_mb, args.data)
        output = Path(temp) / "out.tar.gz"
        mmetools_method(1, 1)(folder, output)  # warm the page cache, untimed
        for label, method in methods.items():
            seconds, cpu_seconds = [], []
            for _ in range(args.reps):
                output.unlink(missing_ok=True)
                cpu_before = _cpu_seconds()
                started = time.perf_counter()
                method(folder, output)
                seconds.append(time.perf_counter() - started)
                cpu_seconds.append(_cpu_seconds() - cpu_before)
            size = output.stat().st_size
            median = statistics.median(seconds)
            cpu = statistics.median(cpu_seconds)
            rows.append(
                {
                    "method": label,
                    "median_s": median,
                    "min_s": min(seconds),
                    "max_s": max(seconds),
                    "runs_s": seconds,
                    "cpu_s": cpu,
                    "mb_per_s": args.size_mb / median,
                    "mb_per_cpu_s": args.size_mb / cpu,
                    "ratio": size / (args.size_mb << 20),
                }
            )
    load_after = os.getloadavg()[0]
    baseline = rows[0]["median_s"]
    for row in rows:
        row["speedup_vs_tar_czf"] = baseline / row["median_s"]

    print(
        f"\n{args.size_mb} MB of {args.data} data, median of {args.reps} runs, {cores} cores, "
        f"mmetools deflates with {DEFLATE_LIBRARY}, gzip/pigz with zlib {zlib.ZLIB_RUNTIME_VERSION}, load average {load_before:.1f} -> {load_after:.1f} "
        "(other work on the machine slows the wall-clock numbers; MB/CPU-s is less sensitive)"
    )
    header = ("method", "median s", "MB/s", "x tar -czf", "CPU s", "MB/CPU-s", "size ratio")
    widths = (38, 8, 6, 10, 6, 8, 10)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = (
            row["method"],
            f"{row['median_s']:.2f}",
            f"{row['mb_per_s']:.1f}",
            f"{row['speedup_vs_tar_czf']:.2f}",
            f"{row['cpu_s']:.2f}",
            f"{row['mb_per_cpu_s']:.1f}",
            f"{row['ratio']:.4f}",
        )
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")

    RESULTS.mkdir(exist_ok=True)
    result_path = RESULTS / f"bench_package-{args.data}-{args.size_mb}MB.json"
    summary = {
        "size_mb": args.size_mb,
        "data": args.data,
        "reps": args.reps,
        "cores": cores,
        "python": platform.python_version(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "mmetools_deflate": DEFLATE_LIBRARY,
        "load_average": [load_before, load_after],
        "rows": rows,
    }
    result_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {result_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
