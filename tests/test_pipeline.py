"""Tests of ci/pipeline.py: change detection in real git repositories, step order, failures."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest
from rich.console import Console

from conftest import REPO_ROOT


def _load_pipeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_pipeline", REPO_ROOT / "ci" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_pipeline"] = module
    spec.loader.exec_module(module)
    return module


pipeline = _load_pipeline()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _write(repo: Path, files: Mapping[str, str]) -> None:
    for relpath, text in files.items():
        path = repo / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A monorepo with three models on `main`, and a branch `feature/x` checked out."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "CI")
    files = {"src/mmetools/__init__.py": "", "tests/test_x.py": "", "README.md": "hi\n"}
    for name in ("alpha", "beta", "gamma"):
        files[f"models/{name}/model_version.txt"] = "2\n"
        files[f"models/{name}/{name}_pipeline/config.pbtxt"] = 'platform: "ensemble"\n'
    _write(repo, files)
    _commit(repo, "three models")
    _git(repo, "checkout", "-q", "-b", "feature/x")
    return repo


def _base(repo: Path) -> str:
    base = pipeline.merge_base(repo, "feature/x", "main")
    assert base == _git(repo, "rev-parse", "main")
    return str(base)


def test_changing_one_model_selects_only_it(repo: Path) -> None:
    _write(repo, {"models/beta/beta_pipeline/config.pbtxt": 'platform: "ensemble"\n# v2\n'})
    _commit(repo, "change beta")
    assert pipeline.changed_models_git(repo, _base(repo)) == ["beta"]


def test_uncommitted_and_untracked_changes_count(repo: Path) -> None:
    _write(repo, {"models/gamma/tests/fixtures/new_case.json": "{}"})
    assert pipeline.changed_models_git(repo, _base(repo)) == ["gamma"]


def test_a_toolkit_change_selects_every_model(repo: Path) -> None:
    _write(repo, {"src/mmetools/harness.py": "X = 1\n"})
    _commit(repo, "toolkit")
    assert pipeline.changed_models_git(repo, _base(repo)) == ["alpha", "beta", "gamma"]


def test_tests_or_docs_changes_select_no_model(repo: Path) -> None:
    _write(repo, {"tests/test_x.py": "# more\n", "README.md": "more\n"})
    _commit(repo, "docs")
    assert pipeline.changed_models_git(repo, _base(repo)) == []


def test_a_deleted_model_is_not_built(repo: Path) -> None:
    _git(repo, "rm", "-q", "-r", "models/alpha")
    _commit(repo, "drop alpha")
    assert pipeline.changed_models_git(repo, _base(repo)) == []


def test_on_the_production_branch_the_base_is_the_previous_commit(repo: Path) -> None:
    _git(repo, "checkout", "-q", "main")
    first = _git(repo, "rev-parse", "HEAD")
    _write(repo, {"models/alpha/model_version.txt": "3\n"})
    _commit(repo, "bump alpha")
    base = pipeline.merge_base(repo, "main", "main")
    assert base == first
    assert pipeline.changed_models_git(repo, str(base)) == ["alpha"]


def test_pants_detection_maps_triton_model_addresses(repo: Path) -> None:
    calls: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        calls.append(tuple(argv))
        return pipeline.CommandResult(0, "models/beta:beta\nmodels/gone:gone\n")

    assert pipeline.changed_models_pants(repo, "abc123", runner) == ["beta"]
    assert calls == [
        (
            "./pants",
            "--changed-since=abc123",
            "--changed-dependents=transitive",
            "--filter-target-type=triton_model",
            "list",
        )
    ]


class Recorder:
    """A step runner that records every command and fails the ones it is told to."""

    def __init__(self, fail: Mapping[tuple[str, str], int] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail or {}

    def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        self.calls.append(tuple(argv))
        for (model, word), code in self.fail.items():
            if word in argv and any(model in a for a in argv):
                return pipeline.CommandResult(code, f"{model} {word}: boom\n")
        return pipeline.CommandResult(0, "ok\n")


def _mentions(argv: tuple[str, ...], model: str) -> bool:
    return any(a.startswith(f"models/{model}") or f"{model}_2" in a for a in argv)


def _run_main(repo: Path, argv: list[str], runner: Recorder) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    code = pipeline.main(argv, repo=repo, runner=runner, environ={}, console=console)
    return code, out.getvalue()


def test_steps_run_in_pipeline_order_for_each_model(repo: Path) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--all", "--branch", "feature/x"], runner)
    assert code == 0, output
    alpha = [c for c in runner.calls if _mentions(c, "alpha")]
    assert alpha == [
        (".venv/bin/mmetools", "fetch", "models/alpha"),
        (".venv/bin/mmetools", "env", "models/alpha"),
        ("./pants", "test", "models/alpha:alpha"),
        ("./pants", "package", "models/alpha:alpha"),
        (
            ".venv/bin/mmetools", "test", "--artifact", "dist/alpha_2.tar.gz",
            "--junit-xml", "dist/reports/alpha-artifact.xml",
        ),
        (".venv/bin/mmetools", "publish", "dist/alpha_2.tar.gz", "--branch", "feature/x"),
    ]  # fmt: skip
    assert runner.calls[0] == ("./pants", "lint", "check", "::")
    assert "pipeline passed: 3 model(s) on branch feature/x" in output


def test_only_the_changed_model_runs_its_steps(repo: Path) -> None:
    _write(repo, {"models/gamma/requirements.txt": "numpy\n"})
    _commit(repo, "gamma needs numpy")
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "feature/x"], runner)
    assert code == 0, output
    touched = {
        a.split("/")[1].split(":")[0] for c in runner.calls for a in c if a.startswith("models/")
    }
    assert touched == {"gamma"}
    assert runner.calls[0][:3] == (
        "./pants",
        f"--changed-since={_base(repo)}",
        "--changed-dependents=transitive",
    )
    assert "changed since" in output and ": gamma (of 3 models)" in output


def test_a_failed_step_stops_that_model_and_names_it(repo: Path) -> None:
    runner = Recorder(fail={("beta", "test"): 3})
    code, output = _run_main(repo, ["--all", "--branch", "main"], runner)
    assert code == 1
    assert "pipeline failed: beta: step 'test' (exit 3): ./pants test models/beta:beta" in output
    assert "beta test: boom" in output
    beta_steps = [c[1] for c in runner.calls if _mentions(c, "beta")]
    assert beta_steps == ["fetch", "env", "test"]
    # The other models still ran to the end.
    assert (
        ".venv/bin/mmetools",
        "publish",
        "dist/gamma_2.tar.gz",
        "--branch",
        "main",
    ) in runner.calls
    report = ElementTree.parse(repo / "dist/reports/pipeline.xml").getroot()
    beta = report.find("testsuite[@name='beta']")
    assert beta is not None
    assert beta.get("failures") == "1" and beta.get("skipped") == "3"
    failure = beta.find("testcase[@name='test']/failure")
    assert failure is not None and failure.get("message") == "exit 3"


def test_failed_code_quality_publishes_nothing(repo: Path) -> None:
    runner = Recorder(fail={("::", "lint"): 1})
    code, output = _run_main(repo, ["--all", "--branch", "main"], runner)
    assert code == 1
    assert "pipeline failed: (repo): step 'quality' (exit 1)" in output
    assert not [c for c in runner.calls if "publish" in c]
    assert output.count("code quality failed") == 3


def test_summary_table_shows_each_model_and_step(repo: Path) -> None:
    runner = Recorder(fail={("alpha", "package"): 1})
    code, output = _run_main(repo, ["--model", "alpha", "--model", "beta", "--branch", "b"], runner)
    assert code == 1
    table = output[output.index("mmetools pipeline") :]
    for word in (
        "quality",
        "fetch",
        "env",
        "test",
        "package",
        "artifact",
        "publish",
        "alpha",
        "beta",
    ):
        assert word in table
    alpha_row = next(line for line in table.splitlines() if "alpha" in line)
    assert "✗" in alpha_row and "skipped" in alpha_row


def test_unknown_model_and_missing_branch_are_usage_errors(repo: Path) -> None:
    code, output = _run_main(repo, ["--model", "delta", "--branch", "b"], Recorder())
    assert code == 2
    assert "error: no such model: delta (models: alpha, beta, gamma)" in output
    _git(repo, "checkout", "-q", "--detach")
    code, output = _run_main(repo, ["--all"], Recorder())
    assert code == 2
    assert "no branch to publish for (detached HEAD): pass --branch or --no-publish" in output


def test_branch_comes_from_ci_variables(repo: Path) -> None:
    assert pipeline.current_branch(repo, {"GITHUB_REF_NAME": "main"}) == "main"
    assert pipeline.current_branch(repo, {"CI_COMMIT_REF_NAME": "feat"}) == "feat"
    assert pipeline.current_branch(repo, {}) == "feature/x"


def test_no_pants_mode_runs_mmetools_directly(repo: Path) -> None:
    runner = Recorder()
    code, _ = _run_main(repo, ["--model", "alpha", "--no-pants", "--no-publish"], runner)
    assert code == 0
    assert runner.calls[0][:2] == ("sh", "-c")
    assert (".venv/bin/mmetools", "package", "models/alpha", "--out", "dist") in runner.calls
    assert not [c for c in runner.calls if "publish" in c]


def test_skip_quality_runs_no_lint_and_still_publishes(repo: Path) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--model", "beta", "--skip-quality", "--branch", "b"], runner)
    assert code == 0, output
    assert not [c for c in runner.calls if "lint" in c]
    assert (".venv/bin/mmetools", "publish", "dist/beta_2.tar.gz", "--branch", "b") in runner.calls


# -------------------------------------------------------------------------------------------------
# End to end: the real pipeline script, a real Triton, S3 staging on moto_server, file:// production


def _run_pipeline(branch: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "ci/pipeline.py", "--model", "intent_classifier", "--branch", branch,
         "--no-pants", "--skip-quality"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_pipeline_publishes_to_staging_on_a_branch_and_to_production_on_main(
    tmp_path: Path, aws_env: str
) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="pipeline-staging")
    production = tmp_path / "production"
    env = {
        **os.environ,
        "MMETOOLS_STAGING_URI": "s3://pipeline-staging/mme",
        "MMETOOLS_PRODUCTION_URI": production.as_uri(),
    }
    artifact = "intent_classifier_1.tar.gz"

    feature = _run_pipeline("feature/x", env)
    assert feature.returncode == 0, feature.stdout + feature.stderr
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="pipeline-staging")["Contents"]}
    assert f"mme/feature-x/{artifact}" in keys
    assert not any(key.startswith("mme/main/") for key in keys)
    assert not production.exists()  # a feature branch never reaches production

    main = _run_pipeline("main", env)
    assert main.returncode == 0, main.stdout + main.stderr
    staged = s3.get_object(Bucket="pipeline-staging", Key=f"mme/main/{artifact}")["Body"].read()
    # production holds exactly the bytes staging holds, with the sha256 sidecar that names them
    assert (production / artifact).read_bytes() == staged
    sidecar = (production / f"{artifact}.sha256").read_text()
    assert sidecar.split()[0] == hashlib.sha256(staged).hexdigest()
