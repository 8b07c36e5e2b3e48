#!/usr/bin/env python3
"""Benchmark: `mmetools publish` to a local S3 endpoint against what a user would do by hand.

Starts its own moto_server on 127.0.0.1, writes one incompressible artifact of SIZE MB (with its
.sha256 and manifest, as `mmetools package` leaves them), then, REPS times, interleaved:

- mmetools publish            the library call behind `mmetools publish --branch feature/x`
                              (HEAD, stale-upload sweep, sidecars, multipart with SHA-256 per part,
                              create-only completion); the local sha256 check is cached from the
                              first run, as it is for a re-publish of an unchanged dist/
- boto3 upload_file defaults  what `aws s3 cp` does: a new S3 client, then 8 MiB parts,
                              10 threads, CRC32 per part (also timed with the client made
                              beforehand: the transfer alone)
- boto3 single stream         upload_file with use_threads=False: one part after the other
- no-op re-publish            the same artifact again (API call and full CLI process): requests
                              sent and time

Every timed upload goes to a fresh key and is deleted afterwards (moto keeps objects on local
disk). Prints a table of medians and writes bench/results/bench_publish-<size>MB.json.

    .venv/bin/python bench/bench_publish.py              # 1024 MB, 5 reps
    .venv/bin/python bench/bench_publish.py --quick      # 64 MB, 5 reps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchlib import start_moto  # noqa: E402 (bench/ is the script's folder)

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20


def make_artifact(folder: Path, size_mb: int) -> Path:
    """What `mmetools build` leaves: a real model tarball (one incompressible weight file of
    SIZE MB), its .sha256, typed manifest and passing evidence (the tests' own helper)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from publish_support import make_artifact as make_published_artifact

    return make_published_artifact(folder, "bench_model_1.tar.gz", size=size_mb * MiB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="64 MB (a CI smoke run)")
    parser.add_argument("--part-size-mb", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        args.size_mb = 64
    work = Path(tempfile.mkdtemp(prefix="bench_publish-"))
    moto, endpoint = start_moto()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        MMETOOLS_CACHE_DIR=str(work / "cache"),
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        return run(args, work, endpoint)
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, endpoint: str) -> int:
    import boto3
    from boto3.s3.transfer import TransferConfig

    from mmetools.release.publish import PublishOptions, publish
    from mmetools.core.settings import load_settings
    from mmetools.release.storage import S3Tuning

    print(f"writing a {args.size_mb} MB artifact ...", flush=True)
    artifact = make_artifact(work / "dist", args.size_mb)
    size = artifact.stat().st_size
    client = boto3.session.Session().client("s3")
    bucket = "bench-publish"
    client.create_bucket(Bucket=bucket)
    tuning = S3Tuning(part_size=args.part_size_mb * MiB, max_concurrency=args.concurrency)

    def settings_for(prefix: str) -> Any:
        return load_settings(
            root=work,
            environ={
                "MMETOOLS_STAGING_URI": f"s3://{bucket}/{prefix}",
                "MMETOOLS_PRODUCTION_URI": f"s3://{bucket}/{prefix}-production",
                "MMETOOLS_CACHE_DIR": str(work / "cache"),
            },
        )

    def clean() -> None:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])

    def mmetools_publish(rep: int) -> float:
        started = time.perf_counter()
        report = publish(
            [artifact], "feature/x", settings=settings_for(f"mm{rep}"),
            options=PublishOptions(s3=tuning),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        assert report.ok and report.results[0].action == "uploaded", report
        return elapsed

    def upload_file(config: TransferConfig, new_client: bool = True) -> Callable[[int], float]:
        def upload(rep: int) -> float:
            started = time.perf_counter()
            # `aws s3 cp` creates its client on every run, as a publish() call does.
            uploader = boto3.session.Session().client("s3") if new_client else client
            uploader.upload_file(
                str(artifact), bucket, f"baseline{rep}/{artifact.name}", Config=config
            )
            return time.perf_counter() - started

        return upload

    # Verify once, untimed, as `mmetools package` + a first publish would have done.
    publish(
        [artifact], "feature/x", settings=settings_for("warmup"), options=PublishOptions(s3=tuning)
    )
    clean()

    methods: dict[str, Callable[[int], float]] = {
        f"mmetools publish ({args.part_size_mb} MiB parts, {args.concurrency} threads)": mmetools_publish,
        "boto3 upload_file defaults (= aws s3 cp)": upload_file(TransferConfig()),
        "  the same, transfer only (client made before)": upload_file(TransferConfig(), False),
        "boto3 upload_file single stream": upload_file(TransferConfig(use_threads=False)),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for rep in range(args.reps):
        for name, method in methods.items():
            times[name].append(method(rep))
            clean()
        print(
            f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{t[-1]:.2f}s" for t in times.values()),
            flush=True,
        )

    # Cold local check: what the first publish of a fresh build pays to hash the file.
    from mmetools.release.publish import load_local_artifact

    verify = []
    for _ in range(args.reps):
        started = time.perf_counter()
        load_local_artifact(artifact, None)
        verify.append(time.perf_counter() - started)

    # No-op re-publish: one HEAD request.
    noop_settings = settings_for("noop")
    publish([artifact], "feature/x", settings=noop_settings, options=PublishOptions(s3=tuning))
    noop_times, noop_requests, noop_steps = [], [], []
    for _ in range(max(5, args.reps)):
        started = time.perf_counter()
        report = publish(
            [artifact], "feature/x", settings=noop_settings, options=PublishOptions(s3=tuning)
        )
        noop_times.append(time.perf_counter() - started)
        assert report.results[0].action == "unchanged"
        noop_requests.append(report.results[0].requests)
        noop_steps.append(report.results[0].seconds)
    cli = str(Path(sys.executable).with_name("mmetools"))
    env = {**os.environ, "MMETOOLS_STAGING_URI": f"s3://{bucket}/noop",
           "MMETOOLS_PRODUCTION_URI": f"s3://{bucket}/noop-production"}  # fmt: skip
    cli_times = []
    for _ in range(max(5, args.reps)):
        started = time.perf_counter()
        subprocess.run([cli, "publish", str(artifact), "--branch", "feature/x"], env=env, cwd=work,
                       check=True, capture_output=True)  # fmt: skip
        cli_times.append(time.perf_counter() - started)

    baseline = "boto3 upload_file defaults (= aws s3 cp)"
    base_median = statistics.median(times[baseline])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"method": name, "median_s": median, "mb_per_s": size / MiB / median,
                     "ratio_vs_aws_s3_cp": base_median / median, "runs_s": values})  # fmt: skip
    print()
    print(f"Publishing a {size / MiB:.0f} MiB artifact to moto_server on loopback, "
          f"median of {args.reps} ({platform.node()}, {os.cpu_count()} cores)")  # fmt: skip
    print(f"| {'method':<48} | {'median s':>8} | {'MiB/s':>7} | {'speed vs aws s3 cp':>18} |")
    print(f"|{'-' * 50}|{'-' * 10}|{'-' * 9}|{'-' * 20}|")
    for row in rows:
        print(f"| {row['method']:<48} | {row['median_s']:8.2f} | {row['mb_per_s']:7.1f} | "
              f"{row['ratio_vs_aws_s3_cp']:17.2f}x |")  # fmt: skip
    verify_median = statistics.median(verify)
    print(f"| {'local sha256 check, cold (first publish only)':<48} | {verify_median:8.2f} | "
          f"{size / MiB / verify_median:7.1f} | {'':>18} |")  # fmt: skip
    print()
    noop_median, cli_median = statistics.median(noop_times), statistics.median(cli_times)
    step_median = statistics.median(noop_steps)
    print(f"No-op re-publish (median of {len(noop_times)}): {max(noop_requests)} request(s); "
          f"{step_median * 1000:.1f} ms for the check itself, {noop_median * 1000:.1f} ms for the "
          f"publish() call (settings, boto3 client, check), {cli_median * 1000:.0f} ms for the "
          "whole `mmetools publish` process")  # fmt: skip

    RESULTS.mkdir(exist_ok=True)
    result_path = RESULTS / f"bench_publish-{args.size_mb}MB.json"
    result_path.write_text(json.dumps({
        "benchmark": "publish", "size_bytes": size, "reps": args.reps, "endpoint": "moto_server (loopback)",
        "part_size_mb": args.part_size_mb, "concurrency": args.concurrency,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "methods": rows,
        "local_sha256_check_cold_s": verify_median,
        "noop_republish": {"requests": max(noop_requests), "median_s_check": step_median, "median_s_in_process": noop_median,
                           "median_s_cli_process": cli_median, "runs_s": noop_times,
                           "cli_runs_s": cli_times},
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {result_path.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
