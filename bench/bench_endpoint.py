#!/usr/bin/env python3
"""Benchmark: a fleet of artifacts on the local multi-model endpoint under a Zipf mix.

N artifacts with distinct names (copies of the two examples: intent_classifier_1..k and
screen_detector_1..k, interleaved so the hot end of the mix holds both) are published to a
staging prefix of a moto_server on loopback; ``mmetools endpoint serve``'s endpoint runs with a
model budget that holds about ``--slots`` of them (one real Triton); locust sends a Zipf mix
through unchanged boto3 ``invoke_endpoint`` calls and checks every answer against the fixtures.
Reported: requests, wrong answers, errors, hit ratio, waited share, warm and cold p50/p99,
evictions per minute, each model's memory and load time, and the capacity plan's predicted hit
ratio (LRU simulation of the same number of requests, and Che's steady state) beside the
measured one. Checks: no wrong answer and no error, evictions happened, the accounted model
memory stayed within the budget, and the prediction is within 10 points of the measurement.

    .venv/bin/python bench/bench_endpoint.py                      # 20 artifacts, 5 slots, 30 min
    .venv/bin/python bench/bench_endpoint.py --copies 3 --slots 2 --seconds 150   # a small run

Artifacts come from --dist (dist/ by default: intent_classifier_1.tar.gz and
screen_detector_1.tar.gz, as `mmetools package` writes them); missing ones are built.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from benchlib import REPO_ROOT, load_note, start_moto, table, write_results

from mmetools.core.settings import load_settings
from mmetools.model.folder import ModelFolder
from mmetools.serving.capacity import plan_capacity
from mmetools.serving.endpoint import EndpointOptions, serve_local_endpoint
from mmetools.serving.fleet import fixture_requests, run_fleet
from mmetools.serving.traffic import parse_mix

MiB = 1024 * 1024
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
EXAMPLES = ("intent_classifier", "screen_detector")
BUCKET = "bench-endpoint"


def artifacts(dist: Path) -> dict[str, Path]:
    from mmetools.pipeline import package_model

    found = {}
    for name in EXAMPLES:
        path = dist / f"{name}_1.tar.gz"
        if not path.is_file():
            print(f"building {path}")
            path = package_model(
                ModelFolder(REPO_ROOT / "models" / name), dist, load_settings()
            ).path
        found[name] = path
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=20, help="artifacts on the endpoint")
    parser.add_argument("--slots", type=float, default=5, help="models the budget holds")
    parser.add_argument(
        "--model-mb", type=int, default=320, help="memory per model assumed for the budget"
    )
    parser.add_argument("--zipf", type=float, default=1.2)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    parser.add_argument("--quick", action="store_true", help="= --copies 3 --slots 2 --seconds 150")
    args = parser.parse_args()
    if args.quick:
        args.copies, args.slots, args.seconds = 3, 2, 150
    built = artifacts(args.dist)
    names = [f"{EXAMPLES[i % 2]}_{i // 2 + 1}.tar.gz" for i in range(args.copies)]
    budget = int(args.slots * args.model_mb * MiB)
    moto, moto_url = start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=moto_url,
    )
    stop = None
    try:
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for name in names:
            s3.upload_file(str(built[name.rsplit("_", 1)[0]]), BUCKET, f"staging/{name}")
        settings = load_settings()
        with load_note() as note:
            endpoint, stop = serve_local_endpoint(
                settings,
                f"s3://{BUCKET}/staging",
                EndpointOptions(model_budget_bytes=budget, wait_seconds=120),
            )
            print(f"endpoint {endpoint.url}, {len(names)} artifacts, budget {budget // MiB} MiB")
            mix = parse_mix(f"zipf:{args.zipf}", names)
            requests = {
                n: fixture_requests(REPO_ROOT / "models" / n.rsplit("_", 1)[0]) for n in names
            }
            result = run_fleet(
                "bench-mme",
                endpoint.url,
                mix,
                requests,
                users=args.users,
                seconds=args.seconds,
                seed=args.seed,
            )
    finally:
        if stop is not None:
            stop()
        moto.terminate()
        moto.wait(timeout=10)
    from mmetools.rendering.fleet import fleet_lines, plan_lines

    for line in fleet_lines(result):
        print(line)
    plan = (
        plan_capacity(
            result.profiles,
            mix=mix.description,
            request_rate=result.step.throughput,
            per_instance_rate=result.step.throughput,
            warm_p99_ms=result.warm.p99_ms or 0.0,
        )
        if result.profiles
        else None
    )
    if plan is not None:
        for line in plan_lines(plan):
            print(line)
    print(
        table(
            ["model", "memory MiB", "load s", "share"],
            [
                [p.name, f"{p.memory_bytes / MiB:.0f}", f"{p.load_seconds:.1f}", f"{p.share:.3f}"]
                for p in result.profiles
            ],
        )
    )
    peak = result.endpoint_metrics.get("memory", {}).get("models_accounted_bytes", 0)
    checks = {
        "no wrong answers": result.wrong_outputs == 0,
        "no errors": not result.errors,
        "evictions happened": bool(result.evictions),
        "accounted memory within the budget": peak <= budget,
        "prediction within 10 points": result.predicted_hit_ratio is not None
        and abs(result.predicted_hit_ratio - result.hit_ratio) <= 0.10,
    }
    for check, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {check}")
    write_results("endpoint", {
        "copies": args.copies, "slots": args.slots, "budget_bytes": budget, "zipf": args.zipf,
        "users": args.users, "seconds": args.seconds, "load": note,
        "result": result.as_json(), "plan": plan.as_json() if plan else None, "checks": checks,
    })  # fmt: skip
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="mmetools-bench-endpoint-"):
        main()
