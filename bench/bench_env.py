#!/usr/bin/env python3
"""Benchmark: packing a model's Python env, first build against a cache hit, and by hand.

Uses the real venv backend (python3.X -m venv, uv pip install, venv-pack) on a copy of
models/intent_classifier (requirements.txt: numpy) with an env cache in a temporary folder,
interleaving the methods in every repetition:

- first build                mmetools.build.env.pack_env with an empty env cache (uv's download
                             cache stays warm, as on a CI runner that keeps it)
- cache hit, fresh checkout  the env is cached, the Python steps hold no copy yet: it is copied
                             into each step (what a new CI checkout with a restored cache does)
- cache hit, up to date      the steps already hold this env: nothing is copied (a re-run)
- by hand                    python3.X -m venv, pip install -r requirements.txt, venv-pack: what
                             a user does without mmetools (pip's download cache warm too)

Target: a cache hit under 1 s. Prints a table of medians and writes bench/results/bench_env.json.

    .venv/bin/python bench/bench_env.py            # 5 reps
    .venv/bin/python bench/bench_env.py --quick    # 3 reps of the builds, 5 of the cache hits
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib import REPO_ROOT, load_note, median, seconds, table, timed, write_results

from mmetools.build.env import STEP_RECORD, pack_env, select_backend
from mmetools.model.folder import ENV_ARCHIVE, ModelFolder
from mmetools.core.settings import Settings, load_settings

MODEL = "intent_classifier"


def copy_model(destination: Path) -> ModelFolder:
    shutil.copytree(
        REPO_ROOT / "models" / MODEL,
        destination / MODEL,
        ignore=shutil.ignore_patterns(ENV_ARCHIVE, STEP_RECORD, "__pycache__", ".mypy_cache"),
    )
    return ModelFolder(destination / MODEL)


def settings_with_cache(root: Path, cache: Path) -> Settings:
    return load_settings(
        root=REPO_ROOT,
        environ={"MMETOOLS_CACHE_DIR": str(cache), "MMETOOLS_ENV_BACKEND": "venv"},
    )


def remove_step_copies(model: ModelFolder) -> None:
    for step in model.python_steps():
        (step.path / ENV_ARCHIVE).unlink(missing_ok=True)
        (step.path / STEP_RECORD).unlink(missing_ok=True)


def quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def by_hand(python: str, requirements: Path, work: Path) -> Callable[[], None]:
    def run() -> None:
        env = work / "by-hand-env"
        output = work / "by-hand.tar.gz"
        shutil.rmtree(env, ignore_errors=True)
        output.unlink(missing_ok=True)
        quiet([python, "-m", "venv", str(env)])
        pip = str(env / "bin" / "pip")
        quiet([pip, "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)])
        quiet([sys.executable, "-m", "venv_pack", "--prefix", str(env), "--output", str(output)])

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 reps of the builds (CI smoke)")
    parser.add_argument("--no-by-hand", action="store_true", help="skip the pip baseline")
    args = parser.parse_args()
    build_reps = 3 if args.quick else args.reps
    hit_reps = max(5, args.reps)

    work = Path(tempfile.mkdtemp(prefix="bench-env-"))
    try:
        model = copy_model(work)
        caches = iter(range(1_000_000))

        def fresh_cache() -> Settings:
            return settings_with_cache(work, work / f"cache-{next(caches)}")

        settings = fresh_cache()
        backend = select_backend(settings)
        python = getattr(backend, "python", None) or shutil.which("python3")
        assert python is not None
        print(f"warming uv's and pip's download caches for {model.requirements_file.name} ...")
        pack_env(model, settings)  # untimed: downloads once, so every build below is alike
        methods: dict[str, Callable[[], object]] = {}

        def first_build() -> None:
            remove_step_copies(model)
            pack_env(model, fresh_cache())

        methods["first build (empty env cache)"] = first_build
        if not args.no_by_hand:
            hand = by_hand(python, model.requirements_file, work)
            try:
                hand()  # untimed warm-up of pip's cache; also tells whether pip can reach it
                methods["by hand: venv + pip install + venv-pack"] = hand
            except subprocess.CalledProcessError as e:
                print(f"skipping the by-hand baseline: {e.stderr.decode(errors='replace')[-300:]}")

        times: dict[str, list[float]] = {name: [] for name in methods}
        with load_note() as load:
            for rep in range(build_reps):
                for name, method in methods.items():
                    times[name].append(timed(method))
                done = ", ".join(seconds(t[-1]) for t in times.values())
                print(f"build rep {rep + 1}/{build_reps}: {done}", flush=True)

            warm = fresh_cache()
            pack_env(model, warm)
            fresh_checkout: list[float] = []
            up_to_date: list[float] = []
            for _ in range(hit_reps):
                remove_step_copies(model)
                fresh_checkout.append(timed(lambda: pack_env(model, warm)))
                up_to_date.append(timed(lambda: pack_env(model, warm)))
        packed = pack_env(model, warm)
        assert packed is not None and packed.cached
        archive_mb = packed.path.stat().st_size / 1e6
        steps = len(packed.steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    times["cache hit, fresh checkout (copy into each step)"] = fresh_checkout
    times["cache hit, steps up to date"] = up_to_date
    first = median(times["first build (empty env cache)"])
    rows = []
    for name, values in times.items():
        rows.append({"method": name, "median_s": median(values), "runs_s": values,
                     "time_vs_first_build": median(values) / first})  # fmt: skip
    print(
        f"\nPacking the env of {MODEL} ({packed.backend} backend, Python {packed.python_version}, "
        f"{archive_mb:.0f} MB archive, {steps} Python steps); median of {build_reps} builds and "
        f"{hit_reps} cache hits; load average {load['before']:.1f} -> {load['after']:.1f}"
    )
    print(table(("method", "median", "time / first build", "target"),
                [(r["method"], seconds(r["median_s"]), f"{r['time_vs_first_build']:.3g}",
                  "< 1 s" if "cache hit" in r["method"] else "")
                 for r in rows]))  # fmt: skip
    write_results("bench_env", {
        "benchmark": "env", "model": MODEL, "backend": packed.backend,
        "python": packed.python_version, "archive_mb": archive_mb, "python_steps": steps,
        "build_reps": build_reps, "hit_reps": hit_reps, "load_average": load, "rows": rows,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
