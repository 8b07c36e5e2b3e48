#!/usr/bin/env python3
"""Benchmark: a model family of N tenants against the same N models as separate model folders,
through the CI pipeline (ci/pipeline.py), as CI runs it.

Two temporary git repositories (branch feature/bench) hold the same N models: a family
`fam` (one ensemble, tenants/t000..) and N separate folders s000.. (each a full copy of the same
ensemble, renamed). Every tenant/model has its own small generated weights: the scaffold's
classifier trained once (`mmetools tenant add`), then perturbed per tenant by 1e-7 relative noise
(same outputs within the fixtures' tolerances, different bytes), DVC-tracked and pushed. Timed is
the whole `.venv/bin/python ci/pipeline.py --no-pants --detect git --skip-quality --no-publish`
process: per selected model validate, fetch, env, test on Triton, package, artifact test through
Triton's SageMaker frontend. Peak memory is the largest resident set among the run's processes
(getrusage of the waited-for children: the pipeline, mmetools, Triton).

Scenarios (each a commit compared with the one before it):
- full              --all
- one changed       one tenant's (model's) weights retrained, its version bumped
- shared change     the family's preprocessing model.py edited, every tenant bumped
                    (the separate folders have no shared file: their equivalent is the full run)
- no-op             a commit that touches no model (README.md)
and, for the 1.2x target, the one-changed scenario in a repository of a single separate model.

Derived: marginal CI time per tenant = (full - one changed) / (N - 1), against the same for the
separate folders (target <= 0.2x); a one-tenant change in the N-tenant family against a one-model
change in the one-model repository (target <= 1.2x). Caches (packed envs, serving envs) are in a
temporary folder warmed by the first run, as on a CI runner that keeps its cache.

    .venv/bin/python bench/bench_families.py            # N = 200 (hours on 2 cores)
    .venv/bin/python bench/bench_families.py --quick    # N = 6
    .venv/bin/python bench/bench_families.py --tenants 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from benchlib import REPO_ROOT, load_note, seconds, table, write_results

BRANCH = "feature/bench"
DRIVER = ["--no-pants", "--detect", "git", "--skip-quality", "--no-publish", "--branch", BRANCH]
FAMILY = "fam"
WEIGHTS = f"{FAMILY}_inferencer/1/model.onnx"
# The child that reports its children's peak RSS (ru_maxrss, KiB on Linux) after the run.
PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def sh(repo: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(list(argv), cwd=repo, capture_output=True, text=True, env=env,
                               check=False)  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout.strip()


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", message)


def perturbed(source: Path, target: Path, seed: int) -> None:
    """``source`` ONNX with every float initializer times (1 + 1e-7 noise): new bytes, the same
    answers within any fixture tolerance."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32:
            noise = 1 + 1e-7 * rng.standard_normal(values.shape).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(values * noise, tensor.name))
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def new_repo(path: Path) -> Path:
    (path / "models").mkdir(parents=True)
    sh(path, "git", "init", "-q", "-b", "main")
    sh(path, "git", "config", "user.email", "bench@example.com")
    sh(path, "git", "config", "user.name", "bench")
    shutil.copyfile(REPO_ROOT / "mmetools.toml", path / "mmetools.toml")
    shutil.copyfile(REPO_ROOT / ".dvcignore", path / ".dvcignore")
    shutil.copytree(REPO_ROOT / ".dvc", path / ".dvc",
                    ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))  # fmt: skip
    (path / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text())  # the same rules
    (path / "README.md").write_text("bench\n")
    (path / "ci").mkdir()
    shutil.copyfile(REPO_ROOT / "ci" / "pipeline.py", path / "ci" / "pipeline.py")
    (path / ".venv").symlink_to(REPO_ROOT / ".venv")
    return path


def tool(repo: Path, *argv: str) -> str:
    return sh(repo, str(repo / ".venv" / "bin" / argv[0]), *argv[1:])


def make_family(work: Path, count: int) -> tuple[Path, list[str]]:
    repo = new_repo(work / "family")
    tool(repo, "mmetools", "new", FAMILY, "--family")
    tool(repo, "mmetools", "tenant", "add", f"models/{FAMILY}", "t000")
    first = repo / "models" / FAMILY / "tenants" / "t000"
    names = [f"t{i:03d}" for i in range(count)]
    for index, name in enumerate(names[1:], start=1):
        folder = first.parent / name
        shutil.copytree(first, folder, ignore=shutil.ignore_patterns("*.dvc", ".gitignore"))
        perturbed(first / WEIGHTS, folder / WEIGHTS, index)
    if len(names) > 1:
        tool(repo, "dvc", "add", *(f"models/{FAMILY}/tenants/{n}/{WEIGHTS}" for n in names[1:]))
    tool(repo, "dvc", "push")
    commit(repo, f"a family of {count} tenants")
    sh(repo, "git", "checkout", "-q", "-b", BRANCH)
    return repo, [f"{FAMILY}-{n}" for n in names]


def make_separate(work: Path, family: Path, count: int, label: str) -> tuple[Path, list[str]]:
    """The family's tenants as ``count`` separate model folders s000.. (the same files)."""
    repo = new_repo(work / label)
    source = family / "models" / FAMILY
    names = [f"s{i:03d}" for i in range(count)]
    for name in names:
        target = repo / "models" / name
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if (
                relative.parts[0] in ("tenants", "tests")
                or path.is_dir()
                or "__pycache__" in str(relative)
            ):
                continue
            out = target / str(relative).replace(FAMILY, name)
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix in (".pbtxt", ".py") or path.name == "BUILD":
                out.write_text(path.read_text().replace(FAMILY, name))
            else:
                shutil.copyfile(path, out)
        (target / "BUILD").write_text(f'triton_model(name="{name}")\n')
        tenant = source / "tenants" / f"t{int(name[1:]):03d}"
        for path in sorted(tenant.rglob("*")):
            relative = path.relative_to(tenant)
            if path.is_dir() or path.suffix == ".dvc" or path.name == ".gitignore":
                continue
            out = target / str(relative).replace(FAMILY, name)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
    tool(repo, "dvc", "add", *(f"models/{n}/{n}_inferencer/1/model.onnx" for n in names))
    tool(repo, "dvc", "push")
    commit(repo, f"{count} separate models")
    sh(repo, "git", "checkout", "-q", "-b", BRANCH)
    return repo, names


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float
    built: int  # artifacts the run left in its run folder
    steps: dict[str, float]  # the builds' own steps (their JUnit reports), summed over models


def build_steps(repo: Path) -> dict[str, float]:
    """Seconds per pipeline step (validate .. artifact) summed over this run's build reports."""
    totals: dict[str, float] = {}
    for report in (repo / "dist" / "reports").glob("*-build.xml"):
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            name = case.get("name", "")
            totals[name] = totals.get(name, 0.0) + float(case.get("time", "0"))
    return {name: round(value, 2) for name, value in sorted(totals.items())}


def run_pipeline(repo: Path, cache: Path, *options: str) -> Run:
    argv = [str(repo / ".venv" / "bin" / "python"), "ci/pipeline.py", *options, *DRIVER]
    shutil.rmtree(repo / "dist" / "reports", ignore_errors=True)
    env = {**os.environ, "MMETOOLS_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=repo, env=env,
                               capture_output=True, text=True, check=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    if completed.returncode != 0 and "no model changed" not in completed.stdout:
        raise SystemExit(f"{' '.join(argv)} failed:\n{completed.stdout[-6000:]}")
    peak = int(completed.stderr.rsplit("peak_kib", 1)[1].split()[0]) / 1024
    built = 0
    if "run folder: " in completed.stdout:
        run_dir = repo / completed.stdout.split("run folder: ", 1)[1].split()[0]
        built = len(list(run_dir.glob("*.tar.gz")))
    return Run(elapsed, peak, built, build_steps(repo))


def bump(version_file: Path) -> None:
    version_file.write_text(f"{int(version_file.read_text()) + 1}\n")


def retrain(repo: Path, weights: Path, version_file: Path, seed: int) -> None:
    """New weights for one tenant/model (perturbed again), tracked, pushed, version bumped."""
    backup = weights.with_suffix(".previous")
    shutil.copyfile(weights, backup)
    perturbed(backup, weights, 10_000 + seed)
    backup.unlink()
    relative = weights.relative_to(repo).as_posix()
    tool(repo, "dvc", "add", relative)
    tool(repo, "dvc", "push", f"{relative}.dvc")
    bump(version_file)


def scenarios(repo: Path, cache: Path, names: list[str], family: bool) -> dict[str, Run]:
    runs = {"full": run_pipeline(repo, cache, "--all")}
    assert runs["full"].built == len(names), runs["full"]
    (repo / "README.md").write_text("bench, no-op\n")
    commit(repo, "docs only")
    runs["noop"] = run_pipeline(repo, cache, "--base", "HEAD~1")
    assert runs["noop"].built == 0, runs["noop"]
    if family:
        tenant = repo / "models" / FAMILY / "tenants" / names[-1].split("-", 1)[1]
        retrain(repo, tenant / WEIGHTS, tenant / "model_version.txt", 1)
    else:
        model = repo / "models" / names[-1]
        weights = model / f"{names[-1]}_inferencer" / "1" / "model.onnx"
        retrain(repo, weights, model / "model_version.txt", 1)
    commit(repo, "one retrained")
    runs["one"] = run_pipeline(repo, cache, "--base", "HEAD~1")
    assert runs["one"].built == 1, runs["one"]
    if family:
        model_py = repo / "models" / FAMILY / f"{FAMILY}_preprocessing" / "1" / "model.py"
        model_py.write_text(model_py.read_text() + "\n# a shared fix\n")
        for version in sorted((repo / "models" / FAMILY / "tenants").glob("*/model_version.txt")):
            bump(version)
        commit(repo, "shared fix")
        runs["shared"] = run_pipeline(repo, cache, "--base", "HEAD~1")
        assert runs["shared"].built == len(names), runs["shared"]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="6 tenants")
    args = parser.parse_args()
    count = 6 if args.quick else args.tenants
    work = Path(tempfile.mkdtemp(prefix="bench-families-"))
    try:
        with load_note() as load:
            print(f"generating a family of {count} tenants and {count} separate models", flush=True)
            family, tenants = make_family(work, count)
            separate, models = make_separate(work, family, count, "separate")
            single, single_names = make_separate(work, family, 1, "single")
            cache = work / "cache"
            print("timing the family, then the separate folders, then one model", flush=True)
            fam = scenarios(family, cache, tenants, family=True)
            sep = scenarios(separate, cache, models, family=False)
            one = scenarios(single, cache, single_names, family=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    marginal_family = (fam["full"].seconds - fam["one"].seconds) / max(1, count - 1)
    marginal_separate = (sep["full"].seconds - sep["one"].seconds) / max(1, count - 1)
    rows = [
        [name, seconds(fam[key].seconds) if key in fam else "-",
         f"{fam[key].peak_mib:.0f} MiB" if key in fam else "-",
         seconds(sep[key].seconds) if key in sep else "(= full)",
         f"{sep[key].peak_mib:.0f} MiB" if key in sep else "-"]
        for name, key in (("full", "full"), ("one changed", "one"), ("shared change", "shared"),
                          ("no-op", "noop"))
    ]  # fmt: skip
    print(table(["scenario", "family", "peak", f"{count} separate", "peak"], rows))
    print("full run, seconds per step summed over the models (family / separate):")
    for step in sorted(set(fam["full"].steps) | set(sep["full"].steps)):
        print(
            f"  {step:10} {fam['full'].steps.get(step, 0):8.1f} {sep['full'].steps.get(step, 0):8.1f}"
        )
    ratio_marginal = marginal_family / marginal_separate if marginal_separate > 0 else float("nan")
    ratio_one = fam["one"].seconds / one["one"].seconds
    print(f"marginal CI time per tenant: {seconds(marginal_family)} vs a separate model's "
          f"{seconds(marginal_separate)} (x{ratio_marginal:.2f}; target <= 0.2)")  # fmt: skip
    print(f"one-tenant change in {count} tenants: {seconds(fam['one'].seconds)} vs a one-model "
          f"change in a one-model repository: {seconds(one['one'].seconds)} (x{ratio_one:.2f}; "
          "target <= 1.2)")  # fmt: skip
    print(f"load average: {load['before']:.2f} before, {load.get('after', float('nan')):.2f} after")
    results: dict[str, Any] = {
        "tenants": count,
        "family": {k: asdict(v) for k, v in fam.items()},
        "separate": {k: asdict(v) for k, v in sep.items()},
        "single_model": {k: asdict(v) for k, v in one.items()},
        "marginal_per_tenant_s": marginal_family,
        "marginal_per_separate_model_s": marginal_separate,
        "marginal_ratio": ratio_marginal,
        "one_tenant_vs_one_model_repo": ratio_one,
        "load": load,
    }
    write_results("bench_families", results)


if __name__ == "__main__":
    main()
