"""RuleRunner tests of the triton_model rules (test, package, publish, check), against a fake
`mmetools` environment.

The fake (small Python scripts in .venv/bin of the test's build root) does what the real CLI's
commands promise at the process boundary: `fetch` writes the weight into the workspace, `env`
writes a packed env into MMETOOLS_CACHE_DIR, `test` checks it sees the weight and the env and
writes a JUnit report, `build --skip test` writes dist/<name>_<v>.tar.gz with its sidecars and
the evidence of its artifact test.
Every call is logged with its working directory and environment.
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

from mmetools_pants import register
from mmetools_pants.check import TritonModelStepsCheckRequest
from mmetools_pants.inputs import weight_exclusions
from mmetools_pants.package import TritonModelPackageFieldSet
from mmetools_pants.publish import (
    MissingEvidenceError,
    PublishTritonModelFieldSet,
    PublishTritonModelRequest,
    check_evidence,
)
from mmetools_pants.test import TritonModelTestFieldSet, TritonModelTestRequest
from mmetools_pants.target_types import TritonModelTarget

WEIGHT = b"onnx weights v1"
WEIGHT_PATH = "models/demo/demo_inferencer/1/model.onnx"
CALLS_LOG = "calls.jsonl"

FAKE_MMETOOLS = """\
import hashlib, json, os, sys
from pathlib import Path

build_root = Path(__file__).resolve().parents[2]
args = sys.argv[1:]
with open(build_root / "calls.jsonl", "a") as log:
    call = {"argv": args, "in_build_root": Path.cwd() == build_root, "env": dict(os.environ)}
    log.write(json.dumps(call) + "\\n")
command, rest = args[0], args[1:]
cache = Path(os.environ.get("MMETOOLS_CACHE_DIR", "no-cache-dir"))
if command == "fetch":
    Path(rest[0], "demo_inferencer/1/model.onnx").write_bytes(WEIGHT)
elif command == "env":
    requirements = Path(rest[0], "requirements.txt").read_bytes()
    entry = cache / "envs" / hashlib.sha256(requirements).hexdigest()
    entry.mkdir(parents=True)
    (entry / "python_env.tar.gz").write_bytes(b"env of " + requirements)
elif command == "test":
    model, report = Path(rest[0]), Path(rest[rest.index("--junit-xml") + 1])
    failed = (model / "FAIL").exists()
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f'<testsuite name="{model.name}" tests="1" failures="{int(failed)}"/>')
    assert (model / "demo_inferencer/1/model.onnx").read_bytes() == WEIGHT
    assert list(cache.glob("envs/*/python_env.tar.gz")), "no packed env in the cache"
    print("case_a FAILED" if failed else "case_a passed")
    sys.exit(1 if failed else 0)
elif command == "build":
    model, out = Path(rest[0]), Path(rest[rest.index("--out") + 1])
    version = (model / "model_version.txt").read_text().strip()
    members = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    out.mkdir()
    tarball = out / f"{model.name}_{version}.tar.gz"
    tarball.write_text("\\n".join(members))
    sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (out / f"{model.name}_{version}.tar.gz.sha256").write_text(f"{sha256}  {tarball.name}\\n")
    (out / f"{model.name}_{version}.tar.gz.manifest.json").write_text("{}")
    if not (Path("models/demo/NO_EVIDENCE")).exists():
        evidence = out / f"{model.name}_{version}.evidence.json"
        evidence.write_text(json.dumps({"artifact": {"sha256": sha256}, "passed": True}))
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
            *register.model_rules(),
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


def _set_options(rule_runner: RuleRunner, *options: str, env: dict[str, str] | None = None) -> None:
    rule_runner.set_options(
        [
            "--mmetools-env-vars=+['LD_LIBRARY_PATH']",
            "--mmetools-workspace-env-vars=+['LD_LIBRARY_PATH']",
            *options,
        ],
        env=env or {},
        env_inherit=ENV_INHERIT,
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
            # A model no other test has: the local process cache outlives a test's build root,
            # and (the point of the hermetic processes) no key names the build root.
            "models/demo/tests/fixtures/unique.txt": os.urandom(8).hex(),
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


def _sandbox_calls(rule_runner: RuleRunner) -> list[dict[str, Any]]:
    return [c for c in _calls(rule_runner) if not c["in_build_root"]]


def test_test_fetches_missing_weights_in_workspace_and_passes(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    result = _run_test(rule_runner)
    assert result.exit_code == 0, result.stderr
    assert "case_a passed" in result.stdout
    assert result.xml_results is not None
    assert result.xml_results.files == ("demo.xml",)
    calls = _calls(rule_runner)
    # fetch ran in the workspace (DVC's cache and remote live there); env and test in sandboxes.
    assert [(c["argv"], c["in_build_root"]) for c in calls] == [
        (["fetch", "models/demo"], True),
        (["env", "models/demo"], False),
        (["test", "models/demo", "--junit-xml", "__reports/demo.xml"], False),
    ] or [(c["argv"], c["in_build_root"]) for c in calls] == [
        (["env", "models/demo"], False),
        (["fetch", "models/demo"], True),
        (["test", "models/demo", "--junit-xml", "__reports/demo.xml"], False),
    ]
    assert Path(rule_runner.build_root, WEIGHT_PATH).read_bytes() == WEIGHT


def test_model_processes_see_no_credentials_home_or_checkout_path(
    rule_runner: RuleRunner,
) -> None:
    _write_repo(rule_runner)
    _set_options(rule_runner, env={"AWS_SECRET_ACCESS_KEY": "s3cr3t", "MMETOOLS_TRITON_MODE": "x"})
    assert _run_test(rule_runner).exit_code == 0
    fetch = next(c for c in _calls(rule_runner) if c["in_build_root"])
    # The uncached fetch alone holds the credentials.
    assert fetch["env"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    for call in _sandbox_calls(rule_runner):
        env = call["env"]
        assert "HOME" not in env and not any(k.startswith("AWS_") for k in env), env
        assert env["MMETOOLS_TRITON_MODE"] == "x"  # a setting that changes the result: passed
        assert not any(rule_runner.build_root in v for v in [*call["argv"], *env.values()]), call
        # The environment's bin comes first, reached through the sandbox.
        assert env["PATH"].split(":")[0].endswith("/.mmetools-tool/venv/bin"), env["PATH"]


def test_rotated_credentials_reuse_the_cached_test_but_a_setting_does_not(
    rule_runner: RuleRunner,
) -> None:
    _write_repo(rule_runner)
    _set_options(rule_runner, env={"AWS_ACCESS_KEY_ID": "AKIAFIRST"})
    assert _run_test(rule_runner).exit_code == 0
    _set_options(rule_runner, env={"AWS_ACCESS_KEY_ID": "AKIAROTATED"})
    assert _run_test(rule_runner).exit_code == 0
    runs = [c["argv"][0] for c in _sandbox_calls(rule_runner)]
    assert runs == ["env", "test"], runs  # cached: neither ran again
    # The broken case: a settings override that changes what is built (the serving target, so
    # the env's Python) is in the key.
    _set_options(
        rule_runner,
        env={
            "AWS_ACCESS_KEY_ID": "AKIAROTATED",
            "MMETOOLS_TARGET_IMAGE": "nvcr.io/nvidia/tritonserver:24.09-py3",
        },
    )
    assert _run_test(rule_runner).exit_code == 0
    runs = [c["argv"][0] for c in _sandbox_calls(rule_runner)]
    assert runs == ["env", "test", "env", "test"], runs


def test_failing_fixture_fails_the_test(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, **{"models/demo/FAIL": ""})
    result = _run_test(rule_runner)
    assert result.exit_code == 1
    assert "case_a FAILED" in result.stdout


def test_weights_that_do_not_match_the_pointer_are_refused(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, pointer_md5="0" * 32)
    with pytest.raises(
        ExecutionError,
        match=(
            "models/demo/demo_inferencer/1/model.onnx: the workspace's file does not match "
            "models/demo/demo_inferencer/1/model.onnx.dvc as Pants read it"
        ),
    ):
        _run_test(rule_runner)
    # Never reached mmetools test.
    assert "test" not in [c["argv"][0] for c in _calls(rule_runner)]


def test_package_tests_the_artifact_and_returns_it_with_its_evidence(
    rule_runner: RuleRunner,
) -> None:
    _write_repo(rule_runner)
    built = _package(rule_runner)
    assert [a.relpath for a in built.artifacts] == [
        "demo_3.evidence.json",
        "demo_3.tar.gz",
        "demo_3.tar.gz.manifest.json",
        "demo_3.tar.gz.sha256",
    ]
    assert [c["argv"] for c in _sandbox_calls(rule_runner)][-1:] == [
        ["build", "models/demo", "--out", "dist", "--skip", "test"],
    ]


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
        "tests/fixtures/unique.txt",
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
    assert argv[1:] == (
        "publish", "{chroot}/demo_3.tar.gz", "--branch", "feature/x", "--retest"
    )  # fmt: skip
    assert argv[0] == os.path.join(rule_runner.build_root, ".venv/bin/mmetools")
    assert published.process.run_in_workspace


def test_publish_refuses_an_artifact_without_evidence(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner, **{"models/demo/NO_EVIDENCE": ""})
    with pytest.raises(ExecutionError, match=r"demo_3.tar.gz: no demo_3.evidence.json beside it"):
        _publish(rule_runner, "--mmetools-branch=feature/x")


def test_evidence_of_another_artifact_is_refused() -> None:
    files = {
        "m_1.tar.gz.sha256": b"a" * 64 + b"  m_1.tar.gz\n",
        "m_1.evidence.json": json.dumps({"artifact": {"sha256": "b" * 64}}).encode(),
    }
    with pytest.raises(MissingEvidenceError, match="is not the evidence of m_1.tar.gz"):
        check_evidence(files, "m_1.tar.gz")
    files["m_1.evidence.json"] = json.dumps({"artifact": {"sha256": "a" * 64}}).encode()
    check_evidence(files, "m_1.tar.gz")
    files["m_1.evidence.json"] = b"{not json"
    with pytest.raises(MissingEvidenceError, match="not JSON"):
        check_evidence(files, "m_1.tar.gz")


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


def test_missing_environment_names_the_fix(rule_runner: RuleRunner) -> None:
    _write_repo(rule_runner)
    _set_options(rule_runner, "--mmetools-venv=nowhere")
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
