"""RuleRunner tests of the triton_model rules, against a fake `mmetools` executable.

The fake (a small Python script at .venv/bin/mmetools of the test's build root) does what the
real CLI's commands promise at the process boundary: `fetch` writes the weight into the workspace,
`test` checks it sees the weight and writes a JUnit report, `package` writes dist/<name>_<v>.tar.gz.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from pants.core.goals.check import CheckResults
from pants.core.goals.package import BuiltPackage
from pants.core.goals.publish import PublishProcesses
from pants.core.goals import test as core_test
from pants.core.goals.test import TestResult, TestSubsystem
from pants.core.util_rules import source_files
from pants.engine.addresses import Address
from pants.engine.fs import DigestContents
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import QueryRule, RuleRunner
from pants.vcs.git import rules as git_rules

from mmetools_pants import rules as model_rules
from mmetools_pants.rules import (
    PublishTritonModelFieldSet,
    PublishTritonModelRequest,
    TritonModelPackageFieldSet,
    TritonModelStepsCheckRequest,
    TritonModelTestFieldSet,
    TritonModelTestRequest,
    weight_exclusions,
)
from mmetools_pants.target_types import TritonModelTarget

WEIGHT = b"onnx weights v1"
WEIGHT_PATH = "models/demo/demo_inferencer/1/model.onnx"
CALLS_LOG = "calls.jsonl"

FAKE_MMETOOLS = """\
import json, os, sys
from pathlib import Path

build_root = Path(__file__).resolve().parents[2]
args = sys.argv[1:]
with open(build_root / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": args, "in_build_root": Path.cwd() == build_root}) + "\\n")
command, rest = args[0], args[1:]
if command == "fetch":
    Path(rest[0], "demo_inferencer/1/model.onnx").write_bytes(WEIGHT)
elif command == "test":
    model, report = Path(rest[0]), Path(rest[rest.index("--junit-xml") + 1])
    failed = (model / "FAIL").exists()
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f'<testsuite name="{model.name}" tests="1" failures="{int(failed)}"/>')
    assert (model / "demo_inferencer/1/model.onnx").read_bytes() == WEIGHT
    print("case_a FAILED" if failed else "case_a passed")
    sys.exit(1 if failed else 0)
elif command == "package":
    model, out = Path(rest[0]), Path(rest[rest.index("--out") + 1])
    version = (model / "model_version.txt").read_text().strip()
    members = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    out.mkdir()
    (out / f"{model.name}_{version}.tar.gz").write_text("\\n".join(members))
    (out / f"{model.name}_{version}.tar.gz.sha256").write_text("0" * 64)
    (out / f"{model.name}_{version}.manifest.json").write_text("{}")
elif command == "publish":
    sys.exit(0)
"""

FAKE_MYPY = """\
import sys
from pathlib import Path

path = Path(sys.argv[-1])
if "BAD" in path.read_text():
    print(f"{path}:1: error: Incompatible types")
    sys.exit(1)
print("Success: no issues found in 1 source file")
"""


def _pointer(md5: str) -> str:
    return dedent(f"""\
        outs:
        - md5: {md5}
          size: {len(WEIGHT)}
          hash: md5
          path: model.onnx
        """)


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *model_rules.rules(),
            *source_files.rules(),
            core_test.get_filtered_environment,
            *TestSubsystem.rules(),
            *git_rules(),
            QueryRule(TestResult, (TritonModelTestRequest.Batch,)),
            QueryRule(BuiltPackage, (TritonModelPackageFieldSet,)),
            QueryRule(PublishProcesses, (PublishTritonModelRequest,)),
            QueryRule(CheckResults, (TritonModelStepsCheckRequest,)),
        ],
        target_types=[TritonModelTarget],
    )
    _set_options(runner)
    return runner


# LD_LIBRARY_PATH: the fakes run on the test's own Python, which may be ./pants' private 3.9.
ENV_INHERIT = {"PATH", "HOME", "LD_LIBRARY_PATH"}


def _set_options(rule_runner: RuleRunner, *options: str) -> None:
    rule_runner.set_options(
        ["--mmetools-env-vars=+['LD_LIBRARY_PATH']", *options], env_inherit=ENV_INHERIT
    )


def _executable(rule_runner: RuleRunner, relpath: str, body: str) -> None:
    path = Path(rule_runner.build_root, relpath)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nWEIGHT = {WEIGHT!r}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _write_repo(rule_runner: RuleRunner, *, pointer_md5: str | None = None, **extra: str) -> None:
    _executable(rule_runner, ".venv/bin/mmetools", FAKE_MMETOOLS)
    _executable(rule_runner, ".venv/bin/mypy", FAKE_MYPY)
    python = Path(rule_runner.build_root, ".venv/bin/python")
    if not python.exists():
        python.symlink_to(sys.executable)
    md5 = pointer_md5 or hashlib.md5(WEIGHT).hexdigest()
    rule_runner.write_files(
        {
            "mmetools.toml": "[publish]\nproduction_branch = 'main'\n",
            "build-support/mypy.ini": "[mypy]\n",
            "models/demo/BUILD": "triton_model(name='demo')",
            "models/demo/model_version.txt": "3\n",
            "models/demo/requirements.txt": "numpy\n",
            "models/demo/demo_pipeline/config.pbtxt": 'platform: "ensemble"\n',
            "models/demo/demo_preprocessing/1/model.py": "x: int = 1\n",
            "models/demo/demo_inferencer/1/model.onnx.dvc": _pointer(md5),
            "models/demo/demo_inferencer/1/.gitignore": "/model.onnx\n",
            "models/demo/tests/fixtures/case_a.json": "{}",
            "models/demo/demo_preprocessing/1/python_env.tar.gz": "packed env: a build output",
            **extra,
        }
    )


def _calls(rule_runner: RuleRunner) -> list[dict[str, Any]]:
    log = Path(rule_runner.build_root, CALLS_LOG)
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _run_test(rule_runner: RuleRunner) -> TestResult:
    target = rule_runner.get_target(Address("models/demo", target_name="demo"))
    field_set = TritonModelTestFieldSet.create(target)
    return rule_runner.request(
        TestResult, [TritonModelTestRequest.Batch("mmetools", (field_set,), None)]
    )


def _package(rule_runner: RuleRunner) -> BuiltPackage:
    target = rule_runner.get_target(Address("models/demo", target_name="demo"))
    return rule_runner.request(BuiltPackage, [TritonModelPackageFieldSet.create(target)])


def test_test_fetches_missing_weights_in_workspace_and_passes(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    result = _run_test(rule_runner)
    assert result.exit_code == 0, result.stderr
    assert "case_a passed" in result.stdout
    assert "staged 1 weight file(s) of models/demo" in result.stderr
    assert result.xml_results is not None
    assert result.xml_results.files == ("demo.xml",)
    calls = _calls(rule_runner)
    # fetch ran in the workspace (DVC's cache and remote live there), test in the sandbox.
    assert calls == [
        {"argv": ["fetch", "models/demo"], "in_build_root": True},
        {
            "argv": ["test", "models/demo", "--junit-xml", "__reports/demo.xml"],
            "in_build_root": False,
        },
    ]
    assert Path(rule_runner.build_root, WEIGHT_PATH).read_bytes() == WEIGHT


def test_test_with_weights_present_does_not_fetch(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    Path(rule_runner.build_root, WEIGHT_PATH).write_bytes(WEIGHT)
    result = _run_test(rule_runner)
    assert result.exit_code == 0, result.stderr
    assert [c["argv"][0] for c in _calls(rule_runner)] == ["test"]


def test_failing_fixture_fails_the_test(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, **{"models/demo/FAIL": ""})
    result = _run_test(rule_runner)
    assert result.exit_code == 1
    assert "case_a FAILED" in result.stdout


def test_weights_that_do_not_match_the_pointer_are_refused(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, pointer_md5="0" * 32)
    result = _run_test(rule_runner)
    assert result.exit_code == 1
    assert (
        "error: models/demo/demo_inferencer/1/model.onnx: the workspace's file does not match "
        "models/demo/demo_inferencer/1/model.onnx.dvc as Pants read it"
    ) in result.stderr
    # Never reached mmetools test.
    assert [c["argv"][0] for c in _calls(rule_runner)] == ["fetch"]


def test_package_returns_artifacts_built_from_the_sandbox(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    built = _package(rule_runner)
    assert [a.relpath for a in built.artifacts] == [
        "demo_3.manifest.json",
        "demo_3.tar.gz",
        "demo_3.tar.gz.sha256",
    ]
    calls = _calls(rule_runner)
    assert calls[-1] == {
        "argv": ["package", "models/demo", "--out", "dist"],
        "in_build_root": False,
    }


def test_package_sandbox_holds_model_files_and_weights_not_build_outputs(
    rule_runner: RuleRunner,
) -> None:
    _write_repo(rule_runner)
    built = _package(rule_runner)
    contents = rule_runner.request(DigestContents, [built.digest])
    members = next(c for c in contents if c.path == "demo_3.tar.gz").content.decode().split("\n")
    assert members == [
        "demo_inferencer/1/.gitignore",
        "demo_inferencer/1/model.onnx",
        "demo_inferencer/1/model.onnx.dvc",
        "demo_pipeline/config.pbtxt",
        "demo_preprocessing/1/model.py",
        "model_version.txt",
        "requirements.txt",
        "tests/fixtures/case_a.json",
    ]


def _publish(rule_runner: RuleRunner, *options: str) -> PublishProcesses:
    _set_options(rule_runner, *options)
    built = _package(rule_runner)
    target = rule_runner.get_target(Address("models/demo", target_name="demo"))
    field_set = PublishTritonModelFieldSet.create(target)
    return rule_runner.request(
        PublishProcesses, [PublishTritonModelRequest(field_set=field_set, packages=(built,))]
    )


def test_publish_runs_mmetools_publish_for_the_branch(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    (published,) = _publish(rule_runner, "--mmetools-branch=feature/x")
    assert published.names == ("demo_3.tar.gz",)
    assert published.description == "branch feature/x"
    assert published.process is not None
    argv = published.process.process.argv
    assert argv[1:] == ("publish", "{chroot}/demo_3.tar.gz", "--branch", "feature/x")
    assert argv[0] == os.path.join(rule_runner.build_root, ".venv/bin/mmetools")
    assert published.process.run_in_workspace


def test_publish_skipped_by_field(rule_runner: RuleRunner) -> None:
    _write_repo(
        rule_runner, **{"models/demo/BUILD": "triton_model(name='demo', skip_publish=True)"}
    )
    (published,) = _publish(rule_runner, "--mmetools-branch=main")
    assert published.process is None
    assert published.description == "(by `skip_publish=True`)"


def test_publish_without_branch_is_skipped(rule_runner: RuleRunner) -> None:
    # The RuleRunner's build root is not a git repository and no branch option is set.
    _write_repo(rule_runner)
    (published,) = _publish(rule_runner)
    assert published.process is None
    assert published.description == "(no git branch checked out: set [mmetools].branch)"


def test_skip_tests_opts_out_of_the_test_goal(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, **{"models/demo/BUILD": "triton_model(name='demo', skip_tests=True)"})
    target = rule_runner.get_target(Address("models/demo", target_name="demo"))
    assert not TritonModelTestFieldSet.is_applicable(target)
    assert TritonModelPackageFieldSet.is_applicable(target)


def test_check_runs_mypy_once_per_folder(rule_runner: RuleRunner) -> None:
    _write_repo(
        rule_runner,
        **{"models/demo/demo_postprocessing/1/model.py": "x: int = 'BAD'\n"},
    )
    target = rule_runner.get_target(Address("models/demo", target_name="demo"))
    results = rule_runner.request(
        CheckResults, [TritonModelStepsCheckRequest([TritonModelTestFieldSet.create(target)])]
    )
    outcome = {r.partition_description: r.exit_code for r in results.results}
    assert outcome == {
        "mypy models/demo/demo_postprocessing/1/": 1,
        "mypy models/demo/demo_preprocessing/1/": 0,
    }


def test_missing_executable_names_the_fix(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    _set_options(rule_runner, "--mmetools-executable=nowhere/mmetools")
    with pytest.raises(
        ExecutionError, match="Create the repository's environment with `ci/bootstrap`"
    ):
        _package(rule_runner)


def test_weight_exclusions_cover_files_and_directories() -> None:
    files = ("a/model.onnx.dvc", "a/config.pbtxt", "b/data.dvc")
    assert weight_exclusions(files) == [
        "!a/model.onnx",
        "!a/model.onnx/**",
        "!b/data",
        "!b/data/**",
    ]
