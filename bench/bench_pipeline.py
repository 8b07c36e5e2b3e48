#!/usr/bin/env python3
"""Benchmark: the CI pipeline (ci/pipeline.py) on N models: a full run, a no-op re-run, and a run
after changing one model.

For each N, a temporary git repository holds N generated copies of the examples (alternately
screen_detector and intent_classifier, renamed <example>_cNN, weights copied, DVC pointers kept)
and a copy of ci/pipeline.py, on a branch feature/bench. What is timed is the whole
`.venv/bin/python ci/pipeline.py ...` process, as CI runs it; per model it runs `mmetools build`
(validate, fetch, env, test on a local Triton, package, artifact test through Triton's SageMaker
frontend) and `mmetools publish` (file: destinations in the repository). Per-model times come
from its JUnit report.

- full run           --all: every model, every step
- no-op re-run       a commit that touches no model (README.md), compared with the commit
                     before it: the pipeline selects no model (REPS runs)
- one model changed  a commit that changes one model (a new model_version.txt and an edited
                     model.py), compared with the commit before it (REPS runs, a different
                     model each time when N allows)

Driver options: --no-pants --detect git --skip-quality. Pants (the CI default driver) is not
measured: its own process cache would make re-runs cheaper still, but it needs the repository's
whole Pants setup; `--detect git` applies the same selection rule as Pants' --changed-since.
The code-quality step (black + mypy over the repository) does not depend on the models and is
skipped. Caches (packed envs, serving envs, Triton backends) are in a temporary folder, warmed
by one untimed run first, as on a CI runner that keeps its cache.

Target: a no-op run does no model work, and a one-model change costs about one model's time
whatever N. Prints a table and writes bench/results/bench_pipeline.json.

    .venv/bin/python bench/bench_pipeline.py            # N = 1, 5, 20; 5 reps (about 10 min)
    .venv/bin/python bench/bench_pipeline.py --quick    # N = 1, 2, 4; 3 reps (about 5 min)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from benchlib import REPO_ROOT, load_note, median, seconds, table, write_results

EXAMPLES = ("screen_detector", "intent_classifier")
REPOSITORY = "(repo)"  # ci/pipeline.py's name for its repository-wide steps
BRANCH = "feature/bench"
DRIVER = ["--no-pants", "--detect", "git", "--skip-quality", "--branch", BRANCH]
# What a copy leaves out: build outputs, and files that are not part of a model's CI work.
SKIP = {"python_env.tar.gz", ".python_env.json", "__pycache__", ".mypy_cache", "BUILD",
        "README.md", "train.py", "make_fixtures.py"}  # fmt: skip
GITIGNORE = """\
/.venv
/dist/
/.published/
__pycache__/
python_env.tar.gz
.python_env.json
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def copy_model(example: str, name: str, models: Path) -> None:
    """models/<example> as models/<name>: folders, configs and model.py renamed."""
    source = REPO_ROOT / "models" / example
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if SKIP & set(relative.parts):
            continue
        target = models / name / str(relative).replace(example, name)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".pbtxt", ".py"):
            target.write_text(path.read_text(encoding="utf-8").replace(example, name))
        else:
            shutil.copyfile(path, target)
    # ci/pipeline refuses a model folder without its target (the copy skips the example's BUILD).
    (models / name / "BUILD").write_text(f'triton_model(name="{name}")\n')


def make_repo(work: Path, count: int) -> tuple[Path, list[str]]:
    repo = work / f"repo-{count}"
    (repo / "models").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    shutil.copyfile(REPO_ROOT / "mmetools.toml", repo / "mmetools.toml")
    shutil.copytree(
        REPO_ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp")
    )
    (repo / ".gitignore").write_text(GITIGNORE)
    (repo / "README.md").write_text("bench\n")
    (repo / "ci").mkdir()
    shutil.copyfile(REPO_ROOT / "ci" / "pipeline.py", repo / "ci" / "pipeline.py")
    (repo / ".venv").symlink_to(REPO_ROOT / ".venv")  # the steps run .venv/bin/mmetools
    names = [f"{EXAMPLES[i % 2]}_c{i:02d}" for i in range(count)]
    for index, name in enumerate(names):
        copy_model(EXAMPLES[index % 2], name, repo / "models")
    commit(repo, f"{count} models")
    git(repo, "checkout", "-q", "-b", BRANCH)
    return repo, names


@dataclass(frozen=True)
class Run:
    seconds: float
    models: tuple[str, ...]  # models whose steps ran
    model_seconds: dict[str, float]  # per model: the sum of its steps' times
    steps: int


def run_pipeline(repo: Path, *options: str) -> Run:
    """`.venv/bin/python ci/pipeline.py OPTIONS` in ``repo``, as CI runs it; timed as a whole."""
    report = repo / "dist" / "reports" / "pipeline.xml"
    report.unlink(missing_ok=True)
    argv = [str(repo / ".venv" / "bin" / "python"), "ci/pipeline.py", *options, *DRIVER]
    started = time.perf_counter()
    completed = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{completed.stdout}{completed.stderr}")
    model_seconds: dict[str, float] = {}
    steps = 0
    for suite in ElementTree.parse(report).getroot():
        ran = [c for c in suite if c.find("skipped") is None]
        if suite.attrib["name"] != REPOSITORY and ran:
            model_seconds[suite.attrib["name"]] = float(suite.attrib["time"])
            steps += len(ran)
    return Run(elapsed, tuple(model_seconds), model_seconds, steps)


def change_model(repo: Path, name: str) -> None:
    """A new version of one model: model_version.txt + 1 and an edited model.py."""
    version_file = repo / "models" / name / "model_version.txt"
    version_file.write_text(f"{int(version_file.read_text()) + 1}\n")
    model_py = repo / "models" / name / f"{name}_postprocessing" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + f"# changed at {time.time_ns()}\n")


def bench_count(work: Path, count: int, reps: int) -> dict[str, Any]:
    repo, names = make_repo(work, count)
    try:
        full = run_pipeline(repo, "--all")
        assert set(full.models) == set(names), full
        noop = []
        for rep in range(reps):
            base = git(repo, "rev-parse", "HEAD")
            (repo / "README.md").write_text(f"bench, no-op {rep}\n")
            commit(repo, "docs only")
            noop.append(run_pipeline(repo, "--base", base))
            assert noop[-1].models == (), noop[-1]
        one = []
        for rep in range(reps):
            name = names[rep % count]
            base = git(repo, "rev-parse", "HEAD")
            change_model(repo, name)
            commit(repo, f"new version of {name}")
            one.append(run_pipeline(repo, "--base", base))
            assert one[-1].models == (name,), one[-1]
        noop_median = median([r.seconds for r in noop])
        one_median = median([r.seconds for r in one])
        print(f"N={count}: full {seconds(full.seconds)}, no-op {seconds(noop_median)}, "
              f"one model {seconds(one_median)}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    per_model = median(list(full.model_seconds.values()))
    return {
        "models": count,
        "full_s": full.seconds,
        "full_steps": full.steps,
        "per_model_median_s": per_model,
        "per_model_s": full.model_seconds,
        "noop_s": [r.seconds for r in noop],
        "noop_models": max(len(r.models) for r in noop),
        "noop_steps": max(r.steps for r in noop),
        "one_model_s": [r.seconds for r in one],
        "one_model_models": max(len(r.models) for r in one),
        "one_model_steps": max(r.steps for r in one),
        # The changed model's whole run against that model's own steps in the full run.
        "one_model_vs_its_steps": median(
            [r.seconds / full.model_seconds[r.models[0]] for r in one]
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N = 1, 2, 4; 3 reps")
    args = parser.parse_args()
    if args.quick:
        args.models, args.reps = [1, 2, 4], 3
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    saved = {k: os.environ.get(k) for k in ("MMETOOLS_CACHE_DIR", "MMETOOLS_ENV_BACKEND")}
    os.environ["MMETOOLS_CACHE_DIR"] = str(work / "cache")
    os.environ["MMETOOLS_ENV_BACKEND"] = "venv"
    try:
        print("warming the caches (packed envs, serving envs, Triton backends): one untimed run")
        repo, _ = make_repo(work, len(EXAMPLES))
        run_pipeline(repo, "--all")
        shutil.rmtree(repo)
        with load_note() as load:
            results = [bench_count(work, count, args.reps) for count in args.models]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nci/pipeline.py {' '.join(DRIVER)} (whole process); full run once per N, median "
        f"of {args.reps} no-op and one-model runs; load average {load['before']:.1f} -> "
        f"{load['after']:.1f}"
    )
    rows = [
        (
            str(r["models"]),
            f"{seconds(r['full_s'])} ({r['full_steps']} steps)",
            seconds(r["per_model_median_s"]),
            f"{seconds(median(r['noop_s']))} ({r['noop_models']} models)",
            f"{seconds(median(r['one_model_s']))} ({r['one_model_steps']} steps)",
            f"{r['one_model_vs_its_steps']:.2f}",
        )
        for r in results
    ]
    print(table(("N", "full run", "one model's steps (median)", "no-op re-run",
                 "one model changed", "changed / its steps in the full run"), rows))  # fmt: skip
    write_results("bench_pipeline", {
        "benchmark": "pipeline", "driver": f"ci/pipeline.py {' '.join(DRIVER)}",
        "reps": args.reps, "load_average": load, "results": results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
