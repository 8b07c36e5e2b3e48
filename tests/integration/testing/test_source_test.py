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

import pytest
from support.testing.tiny_models import write_case, write_tiny_model

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.testing.source_test import run_models
from mmetools.core.settings import load_settings

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
