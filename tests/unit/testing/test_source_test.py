"""mmetools.testing.source_test and ``mmetools test``: staging, reports (unit) and real Triton runs on the
examples and on broken copies of them (integration)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from support.testing.tiny_models import write_case, write_tiny_model

from conftest import MODELS_DIR
from mmetools.core.errors import TritonError
from mmetools.model.cases import compare_case, load_fixtures
from mmetools.testing.source_test import (
    ModelReport,
    RunResult,
    explain_inference_error,
    stage_repository,
    unstage,
)
from mmetools.testing.memory import MemorySample
from mmetools.model.folder import ModelFolder
from mmetools.rendering.console import report_renderable
from mmetools.rendering.junit import write_test_junit

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


def test_junit_xml_that_cannot_be_written_after_the_run_is_a_message(tmp_path: Path) -> None:
    """A --junit-xml path the early check lets through (to root, /proc looks writable) but
    where the write after the tests fails: a message naming the path, not a traceback. (The CLI
    prints the run's summary line before it writes the report.)"""
    from mmetools.core.errors import MmetoolsError

    path = Path("/proc/mmetools-report.xml")
    with pytest.raises(MmetoolsError, match=r"^/proc/mmetools-report.xml: cannot write the JUnit"):
        write_test_junit(_reports(tmp_path / "model"), path)


# --------------------------------------------------------------------------------------------
# The serving env passes the shipped env's audit before any Triton starts (issue 20, defect 19)


def _cached_serving_env(cache: Path, requirements: Path, numpy: str) -> Path:
    """The serving env `ensure_serving_env` would reuse for ``requirements``, holding numpy
    ``numpy`` (what an unpinned `numpy` resolves to for the local Python)."""
    from mmetools.testing.serving_env import COMPLETE_MARKER, env_key, python_version

    text = requirements.read_text(encoding="utf-8")
    env = cache / "serving-envs" / env_key(text)
    site = env / "lib" / f"python{python_version()}" / "site-packages"
    (site / f"numpy-{numpy}.dist-info").mkdir(parents=True)
    (env / COMPLETE_MARKER).write_text(text, encoding="utf-8")
    return env


def test_an_unpinned_numpy_2_for_a_24_09_target_fails_before_triton_with_the_audit_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 19: the source test ran, and failed with "input byte size mismatch ... Expected 64,
    got 0", naming neither numpy nor the target. Now the serving env gets the audit's numpy rule
    for the target, and no server is started (a server start here fails the test)."""
    from mmetools.testing import source_test
    from mmetools.testing.triton import TritonServer
    from support.build.envpack_support import IMAGE_2409, make_model, settings_for

    model = make_model(tmp_path, requirements="numpy\n")
    settings = settings_for(tmp_path, IMAGE_2409)
    _cached_serving_env(settings.cache_dir, model.requirements_file, "2.1.3")
    monkeypatch.setattr(
        TritonServer, "start", lambda self: pytest.fail("a Triton server was started")
    )
    monkeypatch.setattr(source_test, "load_fixtures", lambda model: [])
    result = source_test.run_models([model.path], settings)
    (report,) = result.reports
    assert report.error is not None
    site = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    assert report.error.splitlines() == [
        f"model 'demo': the serving env its Python steps run in here, from "
        f"{model.requirements_file}, fails the audit for target {IMAGE_2409} (Python 3.10, "
        "glibc 2.35); no Triton was started:",
        f"  {site}/numpy-2.1.3.dist-info: numpy 2.1.3, but target {IMAGE_2409} has a python "
        "backend that predates numpy 2 support (python_backend PR 384, Triton 24.11): its "
        "outputs arrive empty; pin numpy<2 (e.g. numpy==1.26.4) in requirements.txt",
        "(the same rule refuses the packed env in `mmetools inspect`)",
    ]


def test_a_numpy_2_serving_env_passes_the_audit_for_a_target_that_takes_numpy_2(
    tmp_path: Path,
) -> None:
    from mmetools.testing.serving_env import ServingEnv, python_version, serving_env_problem
    from mmetools.core.targets import resolve_target
    from support.build.envpack_support import IMAGE_2409, IMAGE_2412

    (tmp_path / "requirements.txt").write_text("numpy\n")
    env = _cached_serving_env(tmp_path, tmp_path / "requirements.txt", "2.1.3")
    serving = ServingEnv(env, python_version(), "k")
    assert serving_env_problem(serving, resolve_target(IMAGE_2412)) is None
    assert serving_env_problem(serving, resolve_target(IMAGE_2409)) is not None
