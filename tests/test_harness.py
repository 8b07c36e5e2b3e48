"""mmetools.testing.source_test and ``mmetools test``: staging, reports (unit) and real Triton runs on the
examples and on broken copies of them (integration)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tiny_models import write_case, write_tiny_model

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.core.errors import TritonError
from mmetools.model.cases import compare_case, load_fixtures
from mmetools.testing.source_test import (
    ModelReport,
    RunResult,
    explain_inference_error,
    run_models,
    stage_repository,
    unstage,
)
from mmetools.testing.memory import MemorySample
from mmetools.model.folder import ModelFolder
from mmetools.rendering.console import report_renderable
from mmetools.rendering.junit import write_test_junit
from mmetools.core.settings import load_settings

ENV_PARAMETER = (
    '\nparameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
    '"$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }\n'
)


# -------------------------------------------------------------------------------------------------
# Staging


def _tree(root: Path) -> dict[str, str]:
    """relative path -> "dir", "link" or "file"."""
    kinds = {}
    for path in sorted(root.rglob("*")):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        kinds[path.relative_to(root).as_posix()] = kind
    return kinds


def test_stage_repository_links_the_artifact_members_and_adds_the_ensemble_version(
    tmp_path: Path,
) -> None:
    model = ModelFolder(write_tiny_model(tmp_path / "src"))
    (model.path / "tiny_double" / "1" / "__pycache__").mkdir()
    (model.path / "tiny_double" / "1" / "model.py.dvc").write_text("outs: []\n")
    repository = tmp_path / "repo"
    repository.mkdir()
    staged = stage_repository(model, repository)
    assert staged.ensemble == "tiny_pipeline"
    assert staged.names == ("tiny_double", "tiny_pipeline")
    assert _tree(repository) == {
        "tiny_double": "dir",
        "tiny_double/1": "dir",
        "tiny_double/1/model.py": "link",
        "tiny_double/config.pbtxt": "link",
        "tiny_pipeline": "dir",
        "tiny_pipeline/1": "dir",
        "tiny_pipeline/config.pbtxt": "link",
    }
    assert (repository / "tiny_double/1/model.py").resolve() == (
        model.path / "tiny_double/1/model.py"
    ).resolve()
    unstage(staged)
    assert _tree(repository) == {}


def test_stage_repository_runs_python_steps_in_the_serving_env(tmp_path: Path) -> None:
    model = ModelFolder(write_tiny_model(tmp_path / "src"))
    config = model.path / "tiny_double" / "config.pbtxt"
    config.write_text(config.read_text() + ENV_PARAMETER)
    repository = tmp_path / "repo"
    repository.mkdir()
    staged = stage_repository(model, repository)
    staged_config = repository / "tiny_double" / "config.pbtxt"
    assert not staged_config.is_symlink()
    assert "EXECUTION_ENV_PATH" not in staged_config.read_text()
    assert 'name: "tiny_double"' in staged_config.read_text()
    assert "EXECUTION_ENV_PATH" in config.read_text()  # the model folder is untouched
    unstage(staged)

    # a packed env is the serving target's (tested by test --artifact, with the target's Python
    # emulated): the source folder still runs in the local serving env
    (model.path / "tiny_double" / "python_env.tar.gz").write_bytes(b"packed env")
    staged = stage_repository(model, repository)
    assert not staged_config.is_symlink()
    assert "EXECUTION_ENV_PATH" not in staged_config.read_text()
    assert not (repository / "tiny_double" / "python_env.tar.gz").exists()


def test_stage_repository_refuses_step_names_already_served(tmp_path: Path) -> None:
    model = ModelFolder(write_tiny_model(tmp_path / "src"))
    repository = tmp_path / "repo"
    (repository / "tiny_double").mkdir(parents=True)
    with pytest.raises(TritonError) as error:
        stage_repository(model, repository)
    assert str(error.value) == (
        "model 'tiny': Triton models tiny_double are already in the server's repository "
        "(two models of this run use the same step names)"
    )


# -------------------------------------------------------------------------------------------------
# Reports

MiB = 1024 * 1024


def _reports(tmp_path: Path) -> RunResult:
    model = ModelFolder(write_tiny_model(tmp_path))
    write_case(model.path, "wrong", [1.0, 2.0], [2.0, 5.0])
    cases = load_fixtures(model)
    outputs = {"DOUBLED": np.array([[2.0, 4.0]], dtype=np.float32)}
    passing = compare_case(cases[0], {"DOUBLED": np.array([[2.0, 5.0]], dtype=np.float32)})
    failing = compare_case(cases[1], outputs)
    good = ModelReport(
        "tiny", "models/tiny", (passing, failing), 1.25, (0.010, 0.002, 0.004, 0.003)
    )
    broken = ModelReport(
        "broken",
        "models/broken",
        error="Triton could not load 'broken_pipeline': boom",
        log_lines=("E1122 model_lifecycle.cc:642] \"failed to load 'broken_post'\"",),
    )
    return RunResult((good, broken), (0.12,))


def test_report_shows_each_output_the_failing_values_and_the_timings(tmp_path: Path) -> None:
    run = _reports(tmp_path)
    console = Console(record=True, width=160)
    for report in run.reports:
        console.print(report_renderable(report), soft_wrap=True)
    text = console.export_text()
    assert "tiny (models/tiny): FAIL" in text
    assert "│ double │ DOUBLED │           0 │           0 │ pass   │" in text
    assert "│ wrong  │ DOUBLED │           1 │         0.2 │ FAIL   │" in text
    assert "wrong: DOUBLED: 1 of 2 values outside" in text
    assert "[0, 1] expected 5.0 got 4.0" in text
    assert "load 1.25 s, 4 requests: p50 4.0 ms, p99 10.0 ms" in text
    assert "broken (models/broken): FAIL" in text
    assert "Triton could not load 'broken_pipeline': boom" in text
    assert "failed to load 'broken_post'" in text


def test_wrong_values_end_with_the_regen_command_and_errors_do_not(tmp_path: Path) -> None:
    run = _reports(tmp_path)
    console = Console(record=True, width=160)
    console.print(report_renderable(run.reports[0]), soft_wrap=True)
    lines = console.export_text().rstrip().splitlines()
    hint = (
        "  if the new outputs are intended, update the expected values with "
        "`mmetools fixtures regen models/tiny` and review the diff before committing"
    )
    assert lines[-2:] == [hint, "  load 1.25 s, 4 requests: p50 4.0 ms, p99 10.0 ms"]
    # A load failure is no fixture difference: regenerating would not fix it.
    console = Console(record=True, width=160)
    console.print(report_renderable(run.reports[1]), soft_wrap=True)
    assert "fixtures regen" not in console.export_text()


def test_an_artifacts_regen_command_names_its_model_folder(tmp_path: Path) -> None:
    good = _reports(tmp_path).reports[0]
    artifact = ModelReport("tiny", "dist/tiny_1.tar.gz", good.results)
    console = Console(record=True, width=200)
    console.print(report_renderable(artifact), soft_wrap=True)
    assert "`mmetools fixtures regen models/tiny`" in console.export_text()


# Triton 2.51's answer when the preprocessing step of intent_classifier returned 'TOKENS' while
# its config declares 'TOKEN_IDS' (what issue 12 saw: the inferencer is blamed).
TRITON_MISSING_INPUT = (
    "intent_classifier_pipeline: inference failed: in ensemble 'intent_classifier_pipeline', "
    "[request id: <id_unknown>] expected 1 inputs but got 0 inputs for model "
    "'intent_classifier_inferencer'. Got input(s) [], but missing required input(s) "
    "['INPUT__0']. Please provide all required input(s)."
)


def test_a_missing_step_output_is_reported_against_the_step_that_did_not_return_it() -> None:
    model = ModelFolder(MODELS_DIR / "intent_classifier")
    step = "intent_classifier_preprocessing"
    assert explain_inference_error(model, TRITON_MISSING_INPUT).splitlines() == [
        f"{MODELS_DIR}/intent_classifier/{step}/config.pbtxt: Python step '{step}' did not "
        "return output 'TOKEN_IDS' that its config declares and the ensemble reads as "
        "'token_ids': the names model.py gives pb_utils.Tensor must be the output names of its "
        "config.pbtxt",
        f"(Triton: {TRITON_MISSING_INPUT})",
    ]


def test_other_inference_errors_are_left_as_triton_wrote_them() -> None:
    model = ModelFolder(MODELS_DIR / "intent_classifier")
    for message in (
        "intent_classifier_pipeline: inference failed: unexpected shape for input 'TEXT'",
        TRITON_MISSING_INPUT.replace("intent_classifier_inferencer", "no_such_step"),
    ):
        assert explain_inference_error(model, message) == message


def test_report_shows_the_memory_a_model_added_only_when_sampled() -> None:
    before = MemorySample(server_rss=100 * MiB, stubs_rss=0, stubs=0)
    after = MemorySample(server_rss=120 * MiB, stubs_rss=60 * MiB, stubs=2)
    console = Console(record=True, width=160)
    console.print(
        report_renderable(ModelReport("m", "s", memory_before=before, memory_after=after))
    )
    console.print(report_renderable(ModelReport("n", "s", memory_before=before)))  # load failed
    text = console.export_text()
    assert "memory: the model added 80.0 MiB (server + 2 stub(s): 180.0 MiB)" in text
    assert text.count("memory:") == 1


def test_latency_percentiles_use_observed_values() -> None:
    report = ModelReport("m", "s", latencies=(0.004, 0.001, 0.003, 0.002))
    assert report.latency_percentile(50) == 0.003
    assert report.latency_percentile(99) == 0.004
    assert ModelReport("m", "s").latency_percentile(50) is None


def test_junit_xml_has_a_suite_per_model_and_a_case_per_fixture(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "mmetools.xml"
    write_test_junit(_reports(tmp_path / "model"), path)
    root = ET.parse(path).getroot()
    assert root.attrib["tests"] == "3" and root.attrib["failures"] == "1"
    assert root.attrib["errors"] == "1"
    tiny, broken = root.findall("testsuite")
    assert [c.attrib["name"] for c in tiny.findall("testcase")] == ["double", "wrong"]
    failure = tiny.findall("testcase")[1].find("failure")
    assert failure is not None and "expected 5.0 got 4.0" in failure.attrib["message"]
    assert (
        (failure.text or "")
        .splitlines()[-1]
        .startswith(
            "if the new outputs are intended, update the expected values with `mmetools fixtures "
            "regen models/tiny`"
        )
    )
    error = broken.find("testcase/error")
    assert error is not None
    assert error.attrib["message"] == "Triton could not load 'broken_pipeline': boom"
    assert "failed to load 'broken_post'" in (error.text or "")
    assert [p.name for p in path.parent.iterdir()] == ["mmetools.xml"]


# -------------------------------------------------------------------------------------------------
# Real runs on tiny models (fast)


@pytest.mark.integration
def test_exit_code_is_zero_only_when_every_case_passes(
    tmp_path: Path, no_triton_leftovers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_tiny_model(tmp_path)
    assert main(["test", str(model)]) == 0
    write_case(model, "zz_wrong", [1.0, 2.0], [2.0, 4.5])
    assert main(["test", str(model)]) == 1
    out = capsys.readouterr().out
    assert "0 of 1 model(s) passed; Triton server start: " in out
    assert "zz_wrong: DOUBLED: 1 of 2 values outside" in out


@pytest.mark.integration
def test_mmetools_test_reports_memory_per_model_and_how_many_fit(
    tmp_path: Path, no_triton_leftovers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_tiny_model(tmp_path)
    assert main(["test", str(model), "--instance-memory", "16"]) == 0
    out = capsys.readouterr().out
    added = re.search(r"memory: the model added (-?[0-9.]+) MiB \(server \+ (\d+) stub", out)
    assert added is not None, out
    assert int(added.group(2)) >= 1  # the Python step's stub was counted
    assert re.search(r"  \d+ model\(s\) of this size fit in 16 GiB at 80%", out), out


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_triton_crash_is_reported_and_the_other_models_still_run(
    tmp_path: Path, no_triton_leftovers: Path
) -> None:
    crashing = write_tiny_model(tmp_path, "tiny_a")
    write_case(crashing, "e_crash", [666.0, 1.0], [1332.0, 2.0])
    write_case(crashing, "f_after", [1.0, 1.0], [2.0, 2.0])
    healthy = write_tiny_model(tmp_path, "tiny_b")
    run = run_models([crashing, healthy], load_settings())
    first, second = run.reports
    assert first.error == (
        "Triton was killed by signal 9 (SIGKILL) while running case 'e_crash' of model 'tiny_a'"
    )
    assert [r.case.name for r in first.results] == ["double"]
    assert first.not_run == ("f_after",)
    assert second.passed and second.name == "tiny_b"
    assert len(run.server_start_seconds) == 2  # the dead server was replaced
    assert not run.passed


EXITING_STEP_BRANCH = """\
            if (x == EXIT_VALUE).any():
                os._exit(3)  # the step's stub process dies; tritonserver itself keeps running
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_step_calling_os_exit_is_reported_and_the_other_models_still_run(
    tmp_path: Path, no_triton_leftovers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end through `mmetools test`: a model.py that calls os._exit while a fixture case
    runs. Its case (and the model's later cases) fail naming the dead step instance, the next
    model on the same server still runs and passes, and nothing is left behind."""
    exiting = write_tiny_model(tmp_path, "tiny_a")
    model_py = exiting / "tiny_a_double" / "1" / "model.py"
    _edit(
        model_py,
        lambda text: text.replace("CRASH_VALUE = 666\n", "CRASH_VALUE = 666\nEXIT_VALUE = 13\n")
        .replace("            if (x == CRASH_VALUE).any():\n",
                 EXITING_STEP_BRANCH + "            if (x == CRASH_VALUE).any():\n"),
    )  # fmt: skip
    write_case(exiting, "e_exit", [13.0, 1.0], [26.0, 2.0])
    write_case(exiting, "f_after", [1.0, 1.0], [2.0, 2.0])
    healthy = write_tiny_model(tmp_path, "tiny_b")
    junit = tmp_path / "report.xml"
    assert main(["test", str(exiting), str(healthy), "--junit-xml", str(junit)]) == 1
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    unhealthy = "Stub process 'tiny_a_double_0_0' is not healthy."
    assert (
        f"e_exit: tiny_a_pipeline: inference failed: in ensemble 'tiny_a_pipeline', {unhealthy}"
    ) in lines, out
    assert f"tiny_a ({exiting}): FAIL" in lines
    assert f"tiny_b ({healthy}): PASS" in lines
    summary, starts = lines[-1].split("; Triton server start: ")
    assert summary == "1 of 2 model(s) passed"
    assert "," not in starts  # one server served both models: it did not die
    suites = {suite.attrib["name"]: suite for suite in ET.parse(junit).getroot()}
    cases = {case.attrib["name"]: case for case in suites["tiny_a"].findall("testcase")}
    assert sorted(cases) == ["double", "e_exit", "f_after"]  # every case is reported
    assert cases["double"].find("error") is None
    error = cases["e_exit"].find("error")
    assert error is not None and unhealthy in error.attrib["message"]
    assert suites["tiny_b"].attrib["errors"] == suites["tiny_b"].attrib["failures"] == "0"


# -------------------------------------------------------------------------------------------------
# The examples and broken copies of them, in one `mmetools test` run


@dataclass(frozen=True)
class CliRun:
    returncode: int
    output: str
    junit: ET.Element
    copies: Path


def _copy_example(name: str, destination: Path) -> Path:
    """A copy of an example without its packed env: its Python steps use the serving env."""
    target = destination / name
    shutil.copytree(
        MODELS_DIR / name,
        target,
        ignore=shutil.ignore_patterns(
            ".mypy_cache", "__pycache__", "python_env.tar.gz", ".python_env.json"
        ),
    )
    return target


def _edit(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text(encoding="utf-8")
    changed = change(text)
    assert changed != text, f"{path}: edit did not apply"
    path.write_text(changed, encoding="utf-8")


@pytest.fixture(scope="module")
def examples_run(
    tmp_path_factory: pytest.TempPathFactory,
    example_weights: None,
    session_triton_processes: Callable[[], set[int]],
) -> CliRun:
    root = tmp_path_factory.mktemp("copies")
    # model.py that raises at import
    broken_import = _copy_example("screen_detector", root / "broken_import")
    _edit(
        broken_import / "screen_detector_postprocessing" / "1" / "model.py",
        lambda text: text.replace(
            "import triton_python_backend_utils as pb_utils\n",
            "import triton_python_backend_utils as pb_utils\n\n"
            "raise RuntimeError('broken on purpose')\n",
            1,
        ),
    )
    # a wrong expected value
    wrong_value = _copy_example("intent_classifier", root / "wrong_value")
    greeting = wrong_value / "tests" / "fixtures" / "greeting.json"
    document = json.loads(greeting.read_text())
    document["expected"]["CONFIDENCE"]["data"] = [0.5]
    greeting.write_text(json.dumps(document))
    # a fixture tensor of the wrong dtype
    wrong_dtype = _copy_example("intent_classifier", root / "wrong_dtype")
    empty = wrong_dtype / "tests" / "fixtures" / "empty_text.json"
    document = json.loads(empty.read_text())
    document["expected"]["CONFIDENCE"]["datatype"] = "FP64"
    empty.write_text(json.dumps(document))
    # a missing weight file
    no_weights = _copy_example("screen_detector", root / "no_weights")
    (no_weights / "screen_detector_inferencer" / "1" / "model.onnx").unlink()

    temp = root / "tmp"
    temp.mkdir()
    junit = root / "report.xml"
    before = session_triton_processes()
    executable = shutil.which("mmetools", path=str(Path(sys.executable).parent))
    assert executable is not None
    completed = subprocess.run(
        [
            executable,
            "test",
            str(MODELS_DIR / "screen_detector"),
            str(MODELS_DIR / "intent_classifier"),
            str(broken_import),
            str(wrong_value),
            str(wrong_dtype),
            str(no_weights),
            "--junit-xml",
            str(junit),
        ],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert session_triton_processes() - before == set(), "tritonserver left running"
    assert list(temp.iterdir()) == [], "temporary folders left behind"
    return CliRun(completed.returncode, completed.stdout, ET.parse(junit).getroot(), root)


def _block(output: str, source: str) -> str:
    """The part of the output reporting the model at ``source``."""
    start = output.index(f"({source}): ")
    end = output.find("(/", start + 1)
    return output[start : end if end != -1 else None]


@pytest.mark.integration
def test_both_examples_pass(examples_run: CliRun) -> None:
    for name, cases in (("screen_detector", 6), ("intent_classifier", 6)):
        block = _block(examples_run.output, str(MODELS_DIR / name))
        assert block.startswith(f"({MODELS_DIR / name}): PASS"), examples_run.output
        assert f", {cases} requests: p50 " in block
    suites = {
        suite.attrib["name"]: suite
        for suite in examples_run.junit.findall("testsuite")
        if suite.attrib["failures"] == suite.attrib["errors"] == "0"
    }
    assert sorted(suites) == ["intent_classifier", "screen_detector"]
    assert "Triton server start: " in examples_run.output


@pytest.mark.integration
def test_any_failure_makes_the_exit_code_nonzero(examples_run: CliRun) -> None:
    assert examples_run.returncode == 1
    assert "2 of 6 model(s) passed" in examples_run.output


@pytest.mark.integration
def test_model_raising_at_import_shows_the_triton_log_line(examples_run: CliRun) -> None:
    source = examples_run.copies / "broken_import" / "screen_detector"
    block = _block(examples_run.output, str(source))
    assert block.startswith(f"({source}): FAIL")
    assert "Triton could not load 'screen_detector_pipeline':" in block
    assert "Internal: RuntimeError: broken on purpose" in block
    assert "Triton log:" in block
    assert (
        "failed to load 'screen_detector_postprocessing' version 1: Internal: RuntimeError" in block
    )
    # the traceback names the model folder's file, not the staging copy
    assert f"{source}/screen_detector_postprocessing/1/model.py(" in block
    assert "mmetools-triton-" not in block and "Started HTTPService" not in block


@pytest.mark.integration
def test_wrong_expected_value_fails_the_case_and_shows_the_values(examples_run: CliRun) -> None:
    source = examples_run.copies / "wrong_value" / "intent_classifier"
    block = _block(examples_run.output, str(source))
    assert block.startswith(f"({source}): FAIL")
    assert "│ greeting             │ CONFIDENCE │" in block
    assert "greeting: CONFIDENCE: 1 of 1 values outside |actual - expected|" in block
    assert "[0, 0] expected 0.5 got 0.9" in block
    assert "│ weather_unknown_city │ CONFIDENCE │" in block  # the other cases still ran


@pytest.mark.integration
def test_fixture_of_the_wrong_dtype_is_a_fixture_error(examples_run: CliRun) -> None:
    source = examples_run.copies / "wrong_dtype" / "intent_classifier"
    block = _block(examples_run.output, str(source))
    assert (
        f"{source}/tests/fixtures/empty_text.json: model 'intent_classifier': "
        "expected.CONFIDENCE.datatype is FP64 but ensemble 'intent_classifier_pipeline' "
        "declares FP32 (TYPE_FP32)"
    ) in block


@pytest.mark.integration
def test_missing_weight_file_is_named(examples_run: CliRun) -> None:
    source = examples_run.copies / "no_weights" / "screen_detector"
    block = _block(examples_run.output, str(source))
    assert (
        f"model 'screen_detector': weight file missing: "
        f"{source}/screen_detector_inferencer/1/model.onnx (tracked by DVC: run `dvc pull`)"
    ) in block


def test_junit_xml_that_cannot_be_written_after_the_run_is_a_message(tmp_path: Path) -> None:
    """A --junit-xml path the early check lets through (to root, /proc looks writable) but
    where the write after the tests fails: a message naming the path, not a traceback. (The CLI
    prints the run's summary line before it writes the report.)"""
    from mmetools.core.errors import MmetoolsError

    path = Path("/proc/mmetools-report.xml")
    with pytest.raises(MmetoolsError, match=r"^/proc/mmetools-report.xml: cannot write the JUnit"):
        write_test_junit(_reports(tmp_path / "model"), path)
