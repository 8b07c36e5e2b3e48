#!/usr/bin/env python3
"""Benchmark: the local Triton behind `mmetools test`: server start, per-model load, and the
latency of the examples' fixture cases, through mmetools.testing.source_test (the code `mmetools test` runs).

For each example (copies of models/screen_detector and models/intent_classifier in a temporary
folder, weights fetched through DVC, caches in a temporary folder):

- server start       TritonServer.start() until ready (bundled CPU Triton, explicit model control,
                     empty repository), REPS times after an untimed first start that assembles
                     the backends folder and the serving env
- load, packed env   stage + load of the model's ensemble with python_env.tar.gz in its Python
                     steps (EXECUTION_ENV_PATH, as CI tests it after `mmetools env`): the first
                     load unpacks the env, later loads of the same files reuse Triton's copy
- load, serving env  the same model without the packed env (a fresh clone before `mmetools env`:
                     the steps run in the serving env)
- latency            every fixture case sent REPEAT times per load through the KServe HTTP
                     frontend (tritonclient, binary tensors); p50/p99 over all requests, and
                     "warm" without each case's first request after a load
- in-process         the same cases through the in-process reference runner (`mmetools fixtures
                     check`: model.py + onnxruntime/torch in this Python, no server), per case

Prints a table and writes bench/results/bench_triton.json.

    .venv/bin/python bench/bench_triton.py            # 5 reps, 20 requests per case per load
    .venv/bin/python bench/bench_triton.py --quick    # 5 reps, 5 requests per case per load
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchlib import (
    REPO_ROOT,
    load_note,
    median,
    percentile,
    seconds,
    table,
    timed,
    write_results,
)

from mmetools.model.dvc import fetch_weights
from mmetools.build.env import STEP_RECORD, pack_env
from mmetools.model.cases import load_fixtures
from mmetools.testing.source_test import ModelReport, prepare_model, run_model_on_server
from mmetools.model.folder import ENV_ARCHIVE, ModelFolder, model_folder
from mmetools.model.reference import run_cases
from mmetools.core.settings import Settings, load_settings
from mmetools.testing.triton import BUNDLED, TritonServer

EXAMPLES = ("screen_detector", "intent_classifier")


def copy_example(name: str, destination: Path, packed: bool, settings: Settings) -> ModelFolder:
    source = model_folder(REPO_ROOT / "models" / name)
    fetch_weights(source)  # from the repository's DVC remote when absent; no-op otherwise
    target = destination / name
    ignore = shutil.ignore_patterns(ENV_ARCHIVE, STEP_RECORD, "__pycache__", ".mypy_cache")
    shutil.copytree(source.path, target, ignore=ignore)
    model = ModelFolder(target)
    if packed:
        pack_env(model, settings)
    return model


def bench_model(
    name: str, work: Path, settings: Settings, reps: int, repeat: int
) -> dict[str, Any]:
    variants = {
        "packed": copy_example(name, work / "packed", True, settings),
        "serving": copy_example(name, work / "serving", False, settings),
    }
    prepared = {}
    for variant, model in variants.items():
        item = prepare_model(model, settings)
        if isinstance(item, ModelReport):
            raise SystemExit(f"{name} ({variant}) cannot be tested: {item.error}")
        prepared[variant] = item
    env = prepared["packed"].env
    options: dict[str, Any] = {"mode": BUNDLED, "python_env": env, "cache_dir": settings.cache_dir}

    def start_stop() -> float:
        server = TritonServer(**options)
        try:
            server.start()
            assert server.start_seconds is not None
            return server.start_seconds
        finally:
            server.stop()

    start_stop()  # untimed: assembles the backends folder once
    starts = [start_stop() for _ in range(reps)]
    loads: dict[str, list[float]] = {"packed": [], "serving": []}
    latencies: list[float] = []
    warm: list[float] = []
    with TritonServer(**options) as server:
        for rep in range(reps):
            for variant, item in prepared.items():
                report = run_model_on_server(
                    server, item, repeat=repeat if variant == "packed" else 1
                )
                if not report.passed or report.load_seconds is None:
                    raise SystemExit(f"{name} ({variant}) failed on Triton: {report.error}")
                loads[variant].append(report.load_seconds)
                if variant == "packed":
                    latencies.extend(report.latencies)
                    # Requests in case order, `repeat` per case: the first of each is the case's
                    # first after the load (cold: stubs and runtimes warm up on it).
                    for case in range(len(item.cases)):
                        warm.extend(report.latencies[case * repeat + 1 : (case + 1) * repeat])
            print(f"{name} rep {rep + 1}/{reps}: load {seconds(loads['packed'][-1])} packed, "
                  f"{seconds(loads['serving'][-1])} serving env", flush=True)  # fmt: skip

    model = variants["serving"]
    cases = load_fixtures(model)
    run_cases(model, cases)  # untimed: imports onnxruntime / torch once
    in_process = [timed(lambda: run_cases(model, cases)) / len(cases) for _ in range(reps)]
    return {
        "model": name,
        "cases": len(cases),
        "server_start_s": starts,
        "load_packed_env_s": loads["packed"],
        "load_serving_env_s": loads["serving"],
        "latencies_s": latencies,
        "requests": len(latencies),
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "warm_p50_s": percentile(warm, 50) if warm else None,
        "warm_p99_s": percentile(warm, 99) if warm else None,
        "in_process_per_case_s": in_process,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="requests per case per load")
    parser.add_argument("--quick", action="store_true", help="5 requests per case per load")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 5
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    settings = load_settings(
        root=REPO_ROOT,
        environ={"MMETOOLS_CACHE_DIR": str(work / "cache"), "MMETOOLS_ENV_BACKEND": "venv"},
    )
    try:
        with load_note() as load:
            results = [bench_model(n, work, settings, args.reps, args.repeat) for n in EXAMPLES]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nBundled CPU Triton, KServe HTTP frontend; median of {args.reps} server starts and "
        f"loads per model, {args.repeat} requests per case per load; load average "
        f"{load['before']:.1f} -> {load['after']:.1f}"
    )
    rows = [
        (
            r["model"],
            seconds(median(r["server_start_s"])),
            f"{seconds(r['load_packed_env_s'][0])} first, "
            f"{seconds(median(r['load_packed_env_s'][1:] or r['load_packed_env_s']))} after",
            seconds(median(r["load_serving_env_s"])),
            f"{r['requests']} ({r['cases']} cases)",
            seconds(r["p50_s"]),
            seconds(r["p99_s"]),
            seconds(r["warm_p99_s"]) if r["warm_p99_s"] is not None else "-",
            seconds(median(r["in_process_per_case_s"])),
        )
        for r in results
    ]
    print(table(("model", "server start", "load, packed env", "load, serving env", "requests",
                 "p50", "p99", "p99 warm", "in-process per case"), rows))  # fmt: skip
    write_results("bench_triton", {
        "benchmark": "triton", "mode": BUNDLED, "frontend": "kserve", "reps": args.reps,
        "repeat": args.repeat, "load_average": load, "models": results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
