"""Runs ./pants for real: the launcher, the in-repo plugin, and a real remote cache (BuildGrid)
shared by two clones of this repository at different paths."""

from __future__ import annotations

import io
import os
import tarfile
import subprocess
from pathlib import Path

import pytest

from conftest import MODELS_DIR, REPO_ROOT
from support.pants.remote_cache_support import (
    artifacts,
    buildgrid,
    clone_env,
    git_clone,
    run_pants,
)
from support.pants.pants_support import _pants

MODEL_NAMES = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model_version.txt").is_file())


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pants_lists_a_triton_model_per_model_folder() -> None:
    expected = sorted(f"models/{name}:{name}" for name in MODEL_NAMES)
    assert expected, "no model folders"
    # No daemon left behind by the test suite; no file watching (the suite writes files).
    completed = _pants(
        "--no-pantsd", "--no-watch-filesystem", "--filter-target-type=triton_model", "list", "::"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == expected


def _checkout_head(clone: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(["git", "checkout", "--quiet", "--detach", head], cwd=clone, check=True)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_a_clone_elsewhere_takes_every_model_process_from_buildgrid(tmp_path: Path) -> None:
    """Clone A tests and packages every model with remote cache writes; clone B, at another path
    with its own empty local caches, another empty HOME and rotated fake AWS credentials, reads:
    it runs no env, test or package process, and its artifacts are byte-identical to A's.
    (The models' targets, `models::`: the plugin's own tests would add minutes of resolves.)"""
    specs = ("test", "package", "models::")
    with buildgrid(tmp_path) as remote:
        clone_a = git_clone(REPO_ROOT, tmp_path / "a" / "mmetools")
        clone_b = git_clone(REPO_ROOT, tmp_path / "elsewhere" / "b" / "checkout")
        for clone in (clone_a, clone_b):
            _checkout_head(clone)
        run_a = run_pants(
            clone_a, *specs, remote=remote, write=True,
            env=clone_env(tmp_path / "home-a", "AKIAFAKEROTATEDAAAA"),
        )  # fmt: skip
        assert run_a.returncode == 0, run_a.output[-5000:]
        # A ran them, so the count can see them: per model, its env, test and package.
        assert run_a.model_processes == 3 * len(MODEL_NAMES), run_a.spawned
        run_b = run_pants(
            clone_b, *specs, remote=remote, write=False,
            env=clone_env(tmp_path / "home-b", "AKIAFAKEROTATEDBBBB"),
        )  # fmt: skip
    assert run_b.returncode == 0, run_b.output[-5000:]
    assert run_b.model_processes == 0, run_b.spawned
    # What B did run: only the uncached fetch of each model's weights and the tool probes.
    assert {d.split(" ")[0] for d in run_b.spawned} <= {"mmetools", "Probe", "Link"}
    assert run_b.counters.get("remote_cache_requests_cached", 0) >= 3 * len(MODEL_NAMES)
    # None was started speculatively beside the cache lookup (then "spawned" would overcount).
    assert run_b.counters.get("remote_cache_speculation_local_completed_first", 0) == 0
    built_a, built_b = artifacts(clone_a), artifacts(clone_b)
    for name in MODEL_NAMES:
        assert any(f.startswith(f"{name}_") and f.endswith(".tar.gz") for f in built_a), built_a
    assert built_a == built_b


def _cli_package(clone: Path, out: Path, home: Path, cache: Path) -> bytes:
    """`mmetools package` in ``clone`` (its own HOME and env cache), returning the tarball."""
    env = clone_env(home, "AKIAFAKECLIPACKAGING")
    if "PYENV_ROOT" in os.environ:  # HOME is empty: say where this machine's pyenv is
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    completed = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "mmetools"), "package", "models/screen_detector",
         "--out", str(out)],
        cwd=clone, env={**env, "MMETOOLS_CACHE_DIR": str(cache)}, capture_output=True, text=True,
        timeout=880,
    )  # fmt: skip
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    (tarball,) = out.glob("screen_detector_*.tar.gz")
    return tarball.read_bytes()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_clones_give_the_same_artifact_bytes_through_the_cli_and_pants(tmp_path: Path) -> None:
    """Issue 9's reproducibility: clone A (empty env cache, its own HOME) and clone B at another
    path (another HOME, the session's env cache) package screen_detector (the example that ships
    an env since issue 22: pillow, layered on the image's numpy) with `mmetools
    package`, and B again with `./pants package`: the three tarballs are byte-identical. One model
    keeps the cost bounded; A's empty cache is what makes the env build from nothing."""
    clone_a = git_clone(REPO_ROOT, tmp_path / "a" / "mmetools")
    clone_b = git_clone(REPO_ROOT, tmp_path / "elsewhere" / "b" / "checkout")
    for clone in (clone_a, clone_b):
        _checkout_head(clone)
    empty_cache = tmp_path / "cache-a"
    cli_a = _cli_package(clone_a, tmp_path / "out-a", tmp_path / "home-a", empty_cache)
    assert list((empty_cache).rglob("python_env.tar.gz")), "clone A did not build its own env"
    with tarfile.open(fileobj=io.BytesIO(cli_a)) as tar:
        assert "screen_detector_env.tar.gz" in tar.getnames()
    session_cache = Path(os.environ["MMETOOLS_CACHE_DIR"])
    cli_b = _cli_package(clone_b, tmp_path / "out-b", tmp_path / "home-b", session_cache)
    completed = _pants(
        "--no-pantsd", "--no-watch-filesystem", "package", "models/screen_detector:",
        cwd=clone_b, **clone_env(tmp_path / "home-b", "AKIAFAKEPANTSPACKAGE"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    pants_b = artifacts(clone_b)
    (name,) = [n for n in pants_b if n.startswith("screen_detector_") and n.endswith(".tar.gz")]
    assert cli_a == cli_b == pants_b[name]
