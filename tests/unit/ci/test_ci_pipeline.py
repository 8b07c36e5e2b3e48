"""Tests of ci/pipeline.py: change detection in real git repositories, step order, run folders,
failures (the pipeline itself, src/mmetools/pipeline.py, is tested in test_pipeline.py)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.console import Console

from support.ci_repository import commit as _commit
from support.ci_repository import git as _git
from support.ci_repository import load_pipeline
from support.ci_repository import write as _write

pipeline = load_pipeline()


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
        files[f"models/{name}/BUILD"] = f'triton_model(name="{name}")\n'
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
    _write(repo, {"src/mmetools/testing/source_test.py": "X = 1\n"})
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
    """A step runner that records every command and fails the ones it is told to. A passing
    `mmetools build` leaves its artifact and evidence in --out, as the real one does (unless
    ``build_nothing``: a build that claims success having built nothing)."""

    def __init__(
        self,
        fail: Mapping[tuple[str, str], int] | None = None,
        build_nothing: bool = False,
        diff: Mapping[str, object] | None = None,
    ) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail or {}
        self.build_nothing = build_nothing
        # What `mmetools diff --json` reports (None: it writes no report); default: first version.
        self.diff = FIRST_VERSION if diff is None else diff

    def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        self.calls.append(tuple(argv))
        for (model, word), code in self.fail.items():
            if word in argv and any(model in a for a in argv):
                return pipeline.CommandResult(code, f"{model} {word}: boom\n")
        if "build" in argv and not self.build_nothing:
            out = cwd / argv[argv.index("--out") + 1]
            model = argv[argv.index("build") + 1].split("/")[1]
            for suffix in (".tar.gz", ".evidence.json"):
                (out / f"{model}_2{suffix}").write_text("built\n")
        if "diff" in argv and self.diff:
            report = cwd / argv[argv.index("--json") + 1]
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(self.diff))
            if not self.diff.get("passed", True):
                return pipeline.CommandResult(1, "LABEL: 3 flips, over the threshold 0\n")
        if "publish" in argv and "--json" in argv:
            # What `mmetools publish --json` reports: staging, and production from main.
            name = Path(argv[argv.index("publish") + 1]).name
            branch = argv[argv.index("--branch") + 1]
            roles = ["staging", "production"] if branch == "main" else ["staging"]
            results = []
            for role in roles:
                folder = f"file:///published/{role}" + ("/" + branch if role == "staging" else "")
                uri = f"{folder}/{name}"
                objects = [uri, f"{uri}.sha256", f"{uri}.manifest.json"]
                results.append({"role": role, "action": "uploaded", "uri": uri, "objects": objects})
            report = cwd / argv[argv.index("--json") + 1]
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps({"results": results, "failures": []}))
        if "smoke" in argv:
            # What `mmetools smoke --junit` writes: a suite per TargetModel, a case per fixture.
            name = argv[argv.index("smoke") + 2]
            report = cwd / argv[argv.index("--junit") + 1]
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(
                f'<testsuites name="mmetools smoke acme"><testsuite name="{name}">'
                '<testcase name="models/x/fixtures/a.json" time="1.250"/></testsuite></testsuites>'
            )
        return pipeline.CommandResult(0, "ok\n")


FIRST_VERSION = {"skipped": True, "passed": True, "note": "no published version below 2"}


def _mentions(argv: tuple[str, ...], model: str) -> bool:
    return any(a.startswith(f"models/{model}") or f"{model}_2" in a for a in argv)


def _run_main(
    repo: Path, argv: list[str], runner: Recorder, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    code = pipeline.main(argv, repo=repo, runner=runner, environ=environ or {}, console=console)
    return code, out.getvalue()


def _run_dir(output: str) -> str:
    return output.split("run folder: ", 1)[1].split()[0]


def test_steps_run_in_pipeline_order_for_each_model(repo: Path) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--all", "--branch", "feature/x"], runner)
    assert code == 0, output
    run = _run_dir(output)
    assert run.startswith("dist/runs/local-")
    alpha = [c for c in runner.calls if _mentions(c, "alpha")]
    assert alpha == [
        (".venv/bin/mmetools", "build", "models/alpha", "--out", run,
         "--junit-xml", "dist/reports/alpha-build.xml"),
        (".venv/bin/mmetools", "diff", "models/alpha", "--artifact", f"{run}/alpha_2.tar.gz",
         "--branch", "feature/x", "--markdown", "dist/reports/alpha-diff.md",
         "--junit-xml", "dist/reports/alpha-diff.xml", "--json", "dist/reports/alpha-diff.json"),
        (".venv/bin/mmetools", "publish", f"{run}/alpha_2.tar.gz", "--branch", "feature/x",
         "--json", "dist/reports/alpha-publish.json"),
    ]  # fmt: skip
    assert runner.calls[0] == ("./pants", "lint", "check", "::")
    assert (
        "pipeline passed: 3 model(s) built and published to staging from branch feature/x "
        f"(run folder {run}; the objects are listed above)"
    ) in output


def test_each_run_packages_into_its_own_new_folder(repo: Path) -> None:
    stale = repo / "dist" / "alpha_2.tar.gz"  # left by an earlier run
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    first = _run_main(repo, ["--model", "alpha", "--branch", "b"], Recorder())
    second = _run_main(repo, ["--model", "alpha", "--branch", "b"], Recorder())
    assert first[0] == second[0] == 0
    assert _run_dir(first[1]) != _run_dir(second[1])
    assert "dist/alpha_2.tar.gz" not in first[1] + second[1]


def test_a_build_that_built_nothing_fails_and_publishes_nothing(repo: Path) -> None:
    runner = Recorder(build_nothing=True)
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "b"], runner)
    assert code == 1
    run = _run_dir(output)
    assert (
        f"alpha: step 'build' (exit 0 but built nothing: {run}/alpha_2.tar.gz, "
        f"{run}/alpha_2.evidence.json missing)"
    ) in output
    assert "asked to build 1 model(s), built none" in output
    assert not [c for c in runner.calls if "publish" in c]


def test_a_model_folder_without_a_target_fails_the_pipeline(repo: Path) -> None:
    (repo / "models/beta/BUILD").unlink()
    runner = Recorder()
    code, output = _run_main(repo, ["--all", "--branch", "b"], runner)
    assert code == 1
    assert (
        "error: models/beta: no triton_model target, so Pants never tests, packages or selects "
        'it: run `./pants tailor models/beta` (or add triton_model(name="beta") to '
        "models/beta/BUILD)"
    ) in output
    assert runner.calls == []  # nothing ran


def test_a_run_over_zero_models_is_not_a_pass(repo: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        _git(repo, "rm", "-q", "-r", f"models/{name}")
    code, output = _run_main(repo, ["--all", "--branch", "b"], Recorder())
    assert code == 1
    assert "error: no model to build" in output


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


def test_no_change_builds_and_publishes_nothing(repo: Path) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "feature/x"], runner)
    assert code == 0, output
    assert "nothing built, nothing published" in output
    assert not [c for c in runner.calls if "build" in c or "publish" in c]
    report = ElementTree.parse(repo / "dist/reports/pipeline.xml").getroot()
    assert report.get("name") == "mmetools pipeline" and len(report) == 0


def test_a_failed_step_stops_that_model_and_names_it(repo: Path) -> None:
    runner = Recorder(fail={("beta", "build"): 3})
    code, output = _run_main(repo, ["--all", "--branch", "main"], runner)
    assert code == 1
    run = _run_dir(output)
    assert (
        f"pipeline failed: beta: step 'build' (exit 3): .venv/bin/mmetools build models/beta "
        f"--out {run}"
    ) in output
    assert "beta build: boom" in output
    beta_steps = [c[1] for c in runner.calls if _mentions(c, "beta")]
    assert beta_steps == ["build"]
    # The other models still ran to the end.
    assert (
        ".venv/bin/mmetools",
        "publish",
        f"{run}/gamma_2.tar.gz",
        "--branch",
        "main",
        "--json",
        "dist/reports/gamma-publish.json",
    ) in runner.calls
    # The summary says where each model went, or why it went nowhere.
    assert "beta: nothing published: build failed (exit 3)" in output
    assert "gamma: production uploaded: file:///published/production/gamma_2.tar.gz" in output
    report = ElementTree.parse(repo / "dist/reports/pipeline.xml").getroot()
    beta = report.find("testsuite[@name='beta']")
    assert beta is not None
    assert beta.get("failures") == "1" and beta.get("skipped") == "3"  # diff, publish, smoke
    failure = beta.find("testcase[@name='build']/failure")
    assert failure is not None and failure.get("message") == "exit 3"


def test_failed_code_quality_publishes_nothing(repo: Path) -> None:
    runner = Recorder(fail={("::", "lint"): 1})
    code, output = _run_main(repo, ["--all", "--branch", "main"], runner)
    assert code == 1
    assert "pipeline failed: (repo): step 'quality' (exit 1)" in output
    assert not [c for c in runner.calls if "publish" in c]
    # each model's publish step is skipped for it, and the summary says so per model
    assert output.count("code quality failed") == 6
    assert "alpha: nothing published: code quality failed" in output


def test_summary_table_shows_each_model_and_the_builds_own_steps(repo: Path) -> None:
    junit = repo / "dist/reports/alpha-build.xml"
    junit.parent.mkdir(parents=True)
    from mmetools.rendering.console import StepRow
    from mmetools.rendering.junit import write_steps_junit

    write_steps_junit([StepRow("alpha", "validate", "passed", 0.1),
                       StepRow("alpha", "test", "failed", 2.0, "1 of 2 case(s) failed")],
                      junit, "mmetools build")  # fmt: skip
    runner = Recorder(fail={("alpha", "build"): 1})
    code, output = _run_main(repo, ["--model", "alpha", "--model", "beta", "--branch", "b"], runner)
    assert code == 1
    table = output[output.index("mmetools pipeline") :]
    for word in ("quality", "build", "validate", "test", "artifact", "diff", "publish", "beta"):
        assert word in table
    alpha_row = next(line for line in table.splitlines() if "alpha" in line)
    assert "✓ 0.1s" in alpha_row and "✗ 2.0s" in alpha_row and "skipped" in alpha_row


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


def test_no_pants_mode_checks_quality_from_the_venv(repo: Path) -> None:
    runner = Recorder()
    code, _ = _run_main(repo, ["--model", "alpha", "--no-pants", "--no-publish"], runner)
    assert code == 0
    assert runner.calls[0][:2] == ("sh", "-c")
    assert [c[1] for c in runner.calls[1:]] == ["build"]  # no publish, no diff to gate it


def test_skip_quality_runs_no_lint_and_still_publishes(repo: Path) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--model", "beta", "--skip-quality", "--branch", "b"], runner)
    assert code == 0, output
    assert not [c for c in runner.calls if "lint" in c]
    assert (".venv/bin/mmetools", "publish", f"{_run_dir(output)}/beta_2.tar.gz", "--branch",
            "b", "--json", "dist/reports/beta-publish.json") in runner.calls  # fmt: skip


def test_a_first_version_skips_the_diff_with_its_note_and_publishes(repo: Path) -> None:
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "b"], Recorder())
    assert code == 0, output
    assert "no published version below 2" in output
    junit = ElementTree.parse(repo / "dist" / "reports" / "pipeline.xml").getroot()
    diff = next(c for c in junit.iter("testcase") if c.get("name") == "diff")
    assert diff.find("skipped") is not None
    assert "published to staging from branch b" in output


def test_a_changed_model_fails_at_diff_and_is_not_published(repo: Path) -> None:
    regressed = {"skipped": False, "passed": False, "note": ""}
    runner = Recorder(diff=regressed)
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "main"], runner)
    assert code == 1, output
    assert "alpha" in output and "diff" in output and "3 flips" in output
    assert not [c for c in runner.calls if "publish" in c]
    junit = ElementTree.parse(repo / "dist" / "reports" / "pipeline.xml").getroot()
    diff = next(c for c in junit.iter("testcase") if c.get("name") == "diff")
    assert diff.find("failure") is not None or diff.find("error") is not None


def test_a_diff_that_wrote_no_report_fails(repo: Path) -> None:
    runner = Recorder(diff={})
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "b"], runner)
    assert code == 1, output
    assert "exit 0 but no diff report: dist/reports/alpha-diff.json" in output
    assert not [c for c in runner.calls if "publish" in c]


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--all", "--branch", "refs/heads/main"], {}),
        (["--all"], {"GITHUB_REF_NAME": "refs/heads/main"}),
        (["--all"], {"CI_COMMIT_REF_NAME": "heads/main"}),
    ],
)
def test_a_ref_looking_branch_is_refused_before_any_step(
    repo: Path, argv: list[str], environ: dict[str, str]
) -> None:
    """Issue 20 #3: a branch named `refs/heads/main` (git accepts it) ran the production
    pipeline (base HEAD^, publish to production and to staging's main folder)."""
    runner = Recorder()
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    code = pipeline.main(argv, repo=repo, runner=runner, environ=environ, console=console)
    assert code == 2, out.getvalue()
    assert "not a branch's short name (it looks like a ref" in out.getvalue()
    assert runner.calls == []  # no step ran, nothing published


# -------------------------------------------------------------------------------------------------
# On the production branch no model change is ever skipped (issue 20 #6)


def _hold_in_production(repo: Path, *artifacts: str) -> None:
    """The default production destination (file:.published/production) holds these names."""
    production = repo / ".published" / "production"
    production.mkdir(parents=True, exist_ok=True)
    for name in artifacts:
        (production / name).write_text("published\n")


def _built_models(runner: Recorder) -> list[str]:
    return [c[c.index("build") + 1].split("/")[1] for c in runner.calls if "build" in c]


@pytest.fixture
def main_pushed_twice(repo: Path) -> tuple[Path, str]:
    """`main` after a push of two commits: the first changes alpha, the second only the README.
    Production holds every model's current version (so only the push range can select alpha).
    Returns the repository and the commit before the push."""
    _git(repo, "checkout", "-q", "main")
    (repo / ".gitignore").write_text(".published/\ndist/\n")
    _commit(repo, "ignore outputs")
    before = _git(repo, "rev-parse", "HEAD")
    _write(repo, {"models/alpha/alpha_pipeline/config.pbtxt": 'platform: "ensemble"\n# v2\n'})
    _commit(repo, "change alpha")
    _write(repo, {"README.md": "more\n"})
    _commit(repo, "docs")
    _hold_in_production(repo, "alpha_2.tar.gz", "beta_2.tar.gz", "gamma_2.tar.gz")
    return repo, before


@pytest.mark.parametrize("variable", ["MMETOOLS_PUSH_BEFORE", "CI_COMMIT_BEFORE_SHA"])
def test_a_push_of_two_commits_on_main_builds_the_model_the_first_one_changed(
    main_pushed_twice: tuple[Path, str], variable: str
) -> None:
    repo, before = main_pushed_twice
    runner = Recorder()
    argv = ["--detect", "git", "--branch", "main"]
    code, output = _run_main(repo, argv, runner, {variable: before})
    assert code == 0, output
    assert _built_models(runner) == ["alpha"]
    assert f"changed since {before[:12]} (the push's range ({variable}=" in output
    assert any("publish" in c and "main" in c for c in runner.calls)


def test_without_ci_push_variables_main_compares_with_the_previous_commit(
    main_pushed_twice: tuple[Path, str],
) -> None:
    """What the push range fixes: HEAD^ alone sees only the README commit."""
    repo, _ = main_pushed_twice
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "main"], runner)
    assert code == 0, output
    assert _built_models(runner) == []
    assert "(the previous commit)" in output


def test_a_zero_before_sha_new_branch_falls_back_to_the_previous_commit(
    main_pushed_twice: tuple[Path, str],
) -> None:
    repo, _ = main_pushed_twice
    base = pipeline.change_base(repo, "main", "main", {"CI_COMMIT_BEFORE_SHA": "0" * 40})
    assert base is not None and base.how == "the previous commit"
    assert base.sha == _git(repo, "rev-parse", "HEAD^")


def test_main_builds_every_model_whose_version_production_lacks(
    main_pushed_twice: tuple[Path, str],
) -> None:
    """An earlier run that failed (or a push whose range CI did not give): production lacks
    beta_2, no commit of this push touched beta, beta is built and published all the same."""
    repo, _ = main_pushed_twice
    (repo / ".published" / "production" / "beta_2.tar.gz").unlink()
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "main"], runner)
    assert code == 0, output
    assert _built_models(runner) == ["beta"]
    assert "not in production at their current version: beta" in output
    assert any(c[:2] == (".venv/bin/mmetools", "publish") and "main" in c for c in runner.calls)


def test_a_branch_is_not_compared_with_production(main_pushed_twice: tuple[Path, str]) -> None:
    """Off the production branch the merge base already covers every commit; production's
    content does not select models there."""
    repo, _ = main_pushed_twice
    (repo / ".published" / "production" / "beta_2.tar.gz").unlink()
    _git(repo, "checkout", "-q", "-b", "feature/y")
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "feature/y"], runner)
    assert code == 0, output
    assert _built_models(runner) == []


def test_main_fails_when_production_cannot_be_asked_mocked_store(
    main_pushed_twice: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline that cannot tell what production holds must not guess: exit 1, named. (The
    store's error is mocked here; tests/functional/release/test_production.py raises it from
    moto_server.)"""
    from mmetools.core.errors import PublishError
    from mmetools.release import production

    def unreachable(*args: object, **kwargs: object) -> list[str]:
        raise PublishError("s3://bucket/p: cannot check which versions production holds: boom")

    monkeypatch.setattr(production, "missing_from_production", unreachable)
    repo, _ = main_pushed_twice
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "main"], runner)
    assert code == 1, output
    assert "error: s3://bucket/p: cannot check which versions production holds" in output
    assert runner.calls == []


# -------------------------------------------------------------------------------------------------
# The pipeline talks while it works (issue 21 item 3)


class SlowRecorder(Recorder):
    """A Recorder whose quality step takes a while (a fake slow step: a cold runner's lint)."""

    def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
        if "lint" in argv:
            time.sleep(0.4)
        return super().__call__(argv, cwd, env)


def test_a_slow_step_prints_a_heartbeat_naming_it_in_a_ci_log(repo: Path) -> None:
    argv = ["--model", "alpha", "--branch", "feature/x", "--heartbeat", "0.05"]
    code, output = _run_main(repo, argv, SlowRecorder())
    assert code == 0, output
    assert "▶ quality: started" in output
    assert "… quality: still running after" in output
    assert "▶ build alpha: started" in output


def test_the_summary_lists_every_published_object(repo: Path) -> None:
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "feature/x"], Recorder())
    assert code == 0, output
    uri = "file:///published/staging/feature/x/alpha_2.tar.gz"
    lines = output.split("published objects:\n", 1)[1].splitlines()
    assert lines[0] == f"  alpha: staging uploaded: {uri}"
    assert lines[1].endswith(f"+ {uri}.sha256") and lines[2].endswith(f"+ {uri}.manifest.json")


def test_no_publish_says_nothing_was_published(repo: Path) -> None:
    code, output = _run_main(repo, ["--model", "alpha", "--no-publish"], Recorder())
    assert code == 0, output
    assert "published objects: none (--no-publish)" in output


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_heartbeat_that_is_not_a_positive_number_is_a_usage_error(repo: Path, value: str) -> None:
    code, output = _run_main(repo, ["--all", "--branch", "b", "--heartbeat", value], Recorder())
    assert code == 2 and f"--heartbeat {value}" in output


# -------------------------------------------------------------------------------------------------
# One rule for a branch's base (issue 21 item 6): origin/main when the clone has it


def test_a_branch_compares_with_origin_main_even_after_a_local_merge(
    repo: Path, tmp_path: Path
) -> None:
    """Local `main` has a merge origin does not have yet: the base stays the merge base with
    origin/main (what CI compares with), and the run says which ref it used."""
    remote = tmp_path / "remote.git"
    _git(repo, "clone", "-q", "--bare", str(repo), str(remote))
    _git(repo, "remote", "add", "origin", str(remote))
    _git(repo, "fetch", "-q", "origin")
    pushed = _git(repo, "rev-parse", "origin/main")
    _write(repo, {"models/alpha/alpha_pipeline/config.pbtxt": 'platform: "ensemble"\n# x\n'})
    _commit(repo, "feature: change alpha")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "-m", "local merge", "feature/x")  # not pushed
    _git(repo, "checkout", "-q", "feature/x")
    base = pipeline.change_base(repo, "feature/x", "main", {})
    assert base is not None and (base.sha, base.how) == (pushed, "the merge base with origin/main")
    runner = Recorder()
    code, output = _run_main(repo, ["--detect", "git", "--branch", "feature/x"], runner)
    assert code == 0, output
    assert f"changed since {pushed[:12]} (the merge base with origin/main): alpha" in output
    assert _built_models(runner) == ["alpha"]


def test_without_origin_a_branch_compares_with_the_local_main(repo: Path) -> None:
    base = pipeline.change_base(repo, "feature/x", "main", {})
    assert base is not None and base.how == "the merge base with main"


ENDPOINT = """
[endpoints.{stage}]
name = "acme"
instance_type = "ml.g5.xlarge"
role_arn = "arn:aws:iam::123456789012:role/sm"
"""


def test_a_branch_without_a_staging_endpoint_skips_the_smoke_with_a_clear_line(
    repo: Path,
) -> None:
    runner = Recorder()
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "feature/x"], runner)
    assert code == 0, output
    assert "mmetools.toml declares no endpoints.staging: no staging endpoint to smoke" in output
    assert not [c for c in runner.calls if "smoke" in c]


def test_a_branch_smokes_what_it_published_on_the_staging_endpoint(repo: Path) -> None:
    _write(repo, {"mmetools.toml": ENDPOINT.format(stage="staging")})
    runner = Recorder()
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "feature/x"], runner)
    assert code == 0, output
    names = [c[1] for c in runner.calls]
    assert names[-2:] == ["publish", "smoke"]  # after the publish, never before
    assert runner.calls[-1] == (
        ".venv/bin/mmetools", "smoke", "staging", "alpha_2.tar.gz", "--junit",
        "dist/reports/alpha-smoke.xml", "--branch", "feature/x",
    )  # fmt: skip
    assert "alpha: smoke on acme alpha_2.tar.gz: 1/1 fixtures passed, first call 1250 ms" in output


def test_main_warms_what_it_published_on_production_and_reports_the_first_call(
    repo: Path,
) -> None:
    _write(repo, {"mmetools.toml": ENDPOINT.format(stage="production")})
    runner = Recorder()
    code, output = _run_main(repo, ["--model", "alpha", "--branch", "main"], runner)
    assert code == 0, output
    assert runner.calls[-1][1:4] == ("smoke", "production", "alpha_2.tar.gz")
    assert runner.calls[-1][-1] == "--warm"
    assert "alpha: warm call on acme alpha_2.tar.gz: 1/1 fixtures passed, first call 1250 ms" in (
        output
    )


def test_a_failing_smoke_fails_the_run_naming_model_and_fixture(repo: Path) -> None:
    _write(repo, {"mmetools.toml": ENDPOINT.format(stage="staging")})

    class WrongAnswer(Recorder):
        def __call__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> object:
            if "smoke" in argv:
                self.calls.append(tuple(argv))
                return pipeline.CommandResult(1, "error: alpha_2.tar.gz: fixture "
                                              "models/alpha/fixtures/a.json: LABEL: differs\n")  # fmt: skip
            return super().__call__(argv, cwd, env)

    code, output = _run_main(repo, ["--model", "alpha", "--branch", "feature/x"], WrongAnswer())
    assert code == 1
    assert "pipeline failed: alpha: step 'smoke' (exit 1)" in output
    assert "fixture models/alpha/fixtures/a.json: LABEL: differs" in output


def test_a_failed_publish_is_not_smoked(repo: Path) -> None:
    _write(repo, {"mmetools.toml": ENDPOINT.format(stage="staging")})
    runner = Recorder(fail={("alpha", "publish"): 1})
    code, _ = _run_main(repo, ["--model", "alpha", "--branch", "feature/x"], runner)
    assert code == 1
    assert not [c for c in runner.calls if "smoke" in c]
