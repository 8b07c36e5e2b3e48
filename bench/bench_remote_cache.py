#!/usr/bin/env python3
"""Benchmark: `./pants test package models::` over N generated models in clone A (remote cache
writes), then in clone B at another path (empty local caches, another HOME, rotated fake AWS
credentials, remote cache reads), against a real BuildGrid on 127.0.0.1.

For each N, a git repository is made from this one's HEAD plus N generated models (copies of the
examples, alternately screen_detector and intent_classifier, renamed <example>_cNN; see
bench_pipeline.copy_model); A and B are two clones of it. The table shows, side by side, each
clone's wall time and how many model processes (env, test, package) it ran; the target is B
running 0 of them. Per-process counts come from Pants' own log (remote_cache_support).

    .venv/bin/python bench/bench_remote_cache.py              # N = 5, 20 (about 40 min)
    .venv/bin/python bench/bench_remote_cache.py --counts 2   # a quick look
Writes bench/results/bench_remote_cache.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_pipeline import EXAMPLES, commit, copy_model, git
from benchlib import REPO_ROOT, seconds, table, write_results

sys.path.insert(0, str(REPO_ROOT / "tests"))
from remote_cache_support import (  # noqa: E402
    artifacts,
    buildgrid,
    cas_bytes,
    clone_env,
    git_clone,
    run_pants,
)

SPECS = ("test", "package", "models::")


def make_repo(work: Path, count: int) -> Path:
    """This repository's HEAD with N generated models instead of the examples."""
    repo = git_clone(REPO_ROOT, work / f"origin-{count}")
    head = git(REPO_ROOT, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "bench", head)
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    for index in range(count):
        example = EXAMPLES[index % 2]
        name = f"{example}_c{index:02d}"
        copy_model(example, name, repo / "models")
        (repo / "models" / name / "BUILD").write_text(
            f'triton_model(name="{name}")\n\npython_sources(name="python", sources=["**/*.py"])\n'
        )
    for example in EXAMPLES:
        subprocess.run(["git", "rm", "-rq", f"models/{example}"], cwd=repo, check=True)
    commit(repo, f"{count} generated models")
    return repo


def bench_count(work: Path, count: int) -> dict[str, Any]:
    origin = make_repo(work, count)
    server = work / f"buildgrid-{count}"
    server.mkdir()
    with buildgrid(server) as remote:
        clone_a = git_clone(origin, work / f"a-{count}" / "mmetools")
        clone_b = git_clone(origin, work / f"elsewhere-{count}" / "b" / "checkout")
        run_a = run_pants(
            clone_a, *SPECS, remote=remote, write=True,
            env=clone_env(work / f"home-a-{count}", "AKIAFAKEROTATEDAAAA"),
        )  # fmt: skip
        if run_a.returncode != 0:
            raise SystemExit(f"clone A failed:\n{run_a.output[-4000:]}")
        stored = cas_bytes(server)
        run_b = run_pants(
            clone_b, *SPECS, remote=remote, write=False,
            env=clone_env(work / f"home-b-{count}", "AKIAFAKEROTATEDBBBB"),
        )  # fmt: skip
        if run_b.returncode != 0:
            raise SystemExit(f"clone B failed:\n{run_b.output[-4000:]}")
    built_a, built_b = artifacts(clone_a), artifacts(clone_b)
    return {
        "models": count,
        "a_seconds": run_a.seconds,
        "b_seconds": run_b.seconds,
        "a_model_processes": run_a.model_processes,
        "b_model_processes": run_b.model_processes,
        "b_processes_run": dict(run_b.spawned),
        "b_remote_cache_hits": run_b.counters.get("remote_cache_requests_cached", 0),
        # Pants' remote cache counters: writes lost by A, lookups B gave up on.
        "a_counters": {k: v for k, v in run_a.counters.items() if k.startswith("remote_")},
        "b_counters": {k: v for k, v in run_b.counters.items() if k.startswith("remote_")},
        "cas_bytes_after_a": stored,
        "artifacts": len([n for n in built_a if n.endswith(".tar.gz")]),
        "artifacts_identical": built_a == built_b,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 20])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-remote-cache-") as tmp:
        for count in args.counts:
            print(f"N = {count}: clone A, then clone B ...", flush=True)
            results.append(bench_count(Path(tmp), count))
    rows = [
        [
            str(r["models"]),
            seconds(r["a_seconds"]),
            str(r["a_model_processes"]),
            seconds(r["b_seconds"]),
            str(r["b_model_processes"]),
            f"{r['b_seconds'] / r['a_seconds']:.2f}",
            str(r["b_remote_cache_hits"]),
            "yes" if r["artifacts_identical"] else "NO",
            f"{r['cas_bytes_after_a'] / 2**30:.2f} GiB",
        ]
        for r in results
    ]
    print(
        table(
            ["models", "A time", "A model processes", "B time", "B model processes",
             "B/A time", "B remote hits", "artifacts identical", "CAS after A"],
            rows,
        )
    )  # fmt: skip
    write_results("bench_remote_cache", {"results": results})
    ok = all(r["b_model_processes"] == 0 and r["artifacts_identical"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
