"""mmetools diff: comparisons (pure), thresholds, datasets, reports, and the real thing: a
candidate against a published version on one Triton through the SageMaker MME emulation."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from conftest import MODELS_DIR, REPO_ROOT
from evidence_support import build, copy_model
from publish_support import new_bucket, s3_client, settings_for

from mmetools import cli
from mmetools.release.diff import (
    DiffReport,
    OutputThresholds,
    compare_output,
    diff_against_published,
    load_dataset,
    load_thresholds,
)
from mmetools.rendering.junit import write_diff_junit as write_junit_xml
from mmetools.rendering.markdown import markdown_report
from mmetools.core.errors import ConfigError, FixtureError, UsageError
from mmetools.model.cases import EnsembleSignature, load_fixtures
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.release.publish import publish
from mmetools.release.published import PublishedVersion
from mmetools.model.reference import run_reference

LABELS = np.array([[b"screen"], [b"not_screen"], [b"screen"]], dtype=object)


def test_label_flips_are_counted_and_listed() -> None:
    flipped = np.array([[b"screen"], [b"screen"], [b"not_screen"]], dtype=object)
    diff = compare_output("LABEL", "BYTES", [("a", LABELS, flipped)], OutputThresholds())
    assert diff.kind == "label" and diff.elements == 3
    assert [(f.case, f.index, f.previous, f.candidate) for f in diff.flips] == [
        ("a", 1, "not_screen", "screen"),
        ("a", 2, "screen", "not_screen"),
    ]
    assert not diff.passed and "2 of 3 labels flipped" in diff.violations[0]
    assert diff.summary["candidate_counts"] == {"not_screen": 1, "screen": 2}
    # Allowed by a threshold: passes. Identical: passes with no flips.
    assert compare_output(
        "LABEL", "BYTES", [("a", LABELS, flipped)], OutputThresholds(max_flip_rate=0.7)
    ).passed
    same = compare_output("LABEL", "BYTES", [("a", LABELS, LABELS.copy())], OutputThresholds())
    assert same.passed and same.flips == ()


def test_float_differences_beyond_tolerance_fail() -> None:
    previous = np.array([[0.5], [0.25], [1.0]], dtype=np.float32)
    close = previous + np.float32(1e-6)
    far = previous.copy()
    far[1] = 0.75
    thresholds = OutputThresholds(atol=1e-5, rtol=0.0)
    assert compare_output("P", "FP32", [("a", previous, close)], thresholds).passed
    diff = compare_output("P", "FP32", [("a", previous, far)], thresholds)
    assert (diff.beyond, diff.elements) == (1, 3)
    assert diff.max_abs == pytest.approx(0.5) and diff.max_rel == pytest.approx(2.0)
    assert not diff.passed and "1 of 3 elements" in diff.violations[0]
    assert compare_output(
        "P", "FP32", [("a", previous, far)], OutputThresholds(max_beyond_share=0.5)
    ).passed


def test_nan_on_one_side_only_is_a_difference() -> None:
    previous = np.array([np.nan, 1.0], dtype=np.float32)
    assert compare_output(
        "P", "FP32", [("a", previous, previous.copy())], OutputThresholds()
    ).passed
    changed = np.array([0.0, 1.0], dtype=np.float32)
    assert not compare_output("P", "FP32", [("a", previous, changed)], OutputThresholds()).passed


def test_a_shape_change_is_reported() -> None:
    diff = compare_output("LABEL", "BYTES", [("a", LABELS, LABELS[:2])], OutputThresholds())
    assert diff.violations == ("LABEL: case 'a': shape [3, 1] became [2, 1]",)


def _model_with(tmp_path: Path, regression: str) -> ModelFolder:
    copy = tmp_path / "models" / "screen_detector"
    shutil.copytree(MODELS_DIR / "screen_detector", copy, ignore=shutil.ignore_patterns("*.onnx"))
    (copy / "regression.toml").write_text(regression, encoding="utf-8")
    return model_folder(copy)


def test_thresholds_per_model_and_output(tmp_path: Path) -> None:
    model = _model_with(tmp_path, "max_flip_rate = 0.1\n[outputs.PROBABILITY]\natol = 0.01\n")
    thresholds = load_thresholds(model)
    assert thresholds.of("LABEL").max_flip_rate == 0.1
    assert thresholds.of("PROBABILITY").atol == 0.01
    assert thresholds.of("PROBABILITY").max_flip_rate == 0.1  # inherits the defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_flips = 1\n", "has no setting 'max_flips'"),
        ("atol = -1\n", "atol must be a number >= 0"),
        ("[outputs.SCORE]\natol = 1\n", "'SCORE' is not an output of ensemble"),
        ("atol = \n", "invalid TOML"),
    ],
)
def test_bad_thresholds_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    model = _model_with(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        load_thresholds(model)
    assert str(model.path / "regression.toml") in str(error.value)


def _signature() -> EnsembleSignature:
    model = model_folder(MODELS_DIR / "intent_classifier")
    return EnsembleSignature.from_config(model.ensemble().config)


def test_dataset_as_jsonl_and_as_a_folder(tmp_path: Path) -> None:
    line = {
        "name": "hi",
        "inputs": {"TEXT": {"datatype": "BYTES", "shape": [1, 1], "data": ["hi"]}},
    }
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(json.dumps(line) + "\n\n" + json.dumps({**line, "name": "b"}) + "\n")
    cases = load_dataset(jsonl, _signature(), "intent_classifier")
    assert [c.name for c in cases] == ["hi", "b"]
    assert cases[0].inputs[0].array.tolist() == [[b"hi"]]
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps({"inputs": line["inputs"]}))
    assert [c.name for c in load_dataset(folder, _signature(), "intent_classifier")] == ["one"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "cases.jsonl:1: invalid JSON"),
        ('{"inputs": {}}\n', "cases.jsonl:1: each line must be an object with a 'name'"),
        ('{"name": "x", "inputs": {}}\n', "input 'TEXT' missing from 'inputs'"),
        ('{"name": "x", "inputs": {"TEXT": {}}, "expected": {}}\n', "expected"),
    ],
)
def test_bad_dataset_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(content)
    with pytest.raises(FixtureError, match=message):
        load_dataset(jsonl, _signature(), "intent_classifier")


def test_a_dataset_that_is_neither_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="a folder of \\*.json case files or a .jsonl file"):
        load_dataset(tmp_path / "cases.csv", _signature(), "intent_classifier")


def test_reports_for_a_skipped_first_version(tmp_path: Path) -> None:
    report = DiffReport("demo", "models/demo", None, note="no published version of demo below 1")
    assert report.passed and report.skipped
    assert "Skipped: no published version" in markdown_report(report)
    write_junit_xml(report, tmp_path / "diff.xml")
    suite = ET.parse(tmp_path / "diff.xml").getroot()
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "0")


def test_junit_lists_a_failing_output() -> None:
    flipped = np.array([[b"screen"], [b"screen"], [b"screen"]], dtype=object)
    diff = compare_output("LABEL", "BYTES", [("a", LABELS, flipped)], OutputThresholds())
    previous = PublishedVersion("production", "demo", 1, "file:///x/demo_1.tar.gz")
    report = DiffReport("demo", "models/demo", previous, 1, (diff,))
    text = markdown_report(report)
    assert "**FAIL**" in text and "| LABEL | a | 1 | not_screen | screen |" in text


# ------------------------------------------------------------------------------------------------
# The real run: published version 1, candidates on one Triton


def expected_flips(previous: ModelFolder, candidate: ModelFolder) -> int:
    """The LABEL flips over the fixtures' inputs, from the in-process reference runner: an
    independent route to the number the Triton run must report."""
    flips = 0
    for case in load_fixtures(previous):
        before = run_reference(previous, case.input_arrays())["LABEL"]
        after = run_reference(candidate, case.input_arrays())["LABEL"]
        flips += int(np.count_nonzero(before != after))
    return flips


@pytest.fixture(scope="module")
def published_v1(
    tmp_path_factory: pytest.TempPathFactory, example_weights: None
) -> tuple[Path, ModelFolder]:
    """screen_detector version 1 published (staging and production) to file: destinations."""
    root = tmp_path_factory.mktemp("published")
    settings = settings_for(root, (root / "staging").as_uri(), (root / "production").as_uri())
    v1 = copy_model("screen_detector", root / "v1")
    artifact = build(v1, root / "dist", settings)
    assert publish([artifact], "main", settings=settings).ok
    return root, v1


@pytest.mark.integration
def test_diff_flags_a_changed_preprocessing_constant_with_the_right_flip_count(
    published_v1: tuple[Path, ModelFolder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_triton_leftovers: Path,
) -> None:
    root, v1 = published_v1
    candidate = copy_model("screen_detector", tmp_path, version=2, change_mean=True)
    flips = expected_flips(v1, candidate)
    assert flips > 0  # the change is big enough to flip labels, so the check can fail
    monkeypatch.chdir(root)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", (root / "staging").as_uri())
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", (root / "production").as_uri())
    outputs = tmp_path / "reports"
    code = cli.main(
        [
            "diff",
            str(candidate.path),
            "--markdown",
            str(outputs / "diff.md"),
            "--junit-xml",
            str(outputs / "diff.xml"),
            "--json",
            str(outputs / "diff.json"),
        ]
    )
    assert code == 1
    document = json.loads((outputs / "diff.json").read_text())
    assert document["previous"]["artifact"] == "screen_detector_1.tar.gz"
    assert document["previous"]["role"] == "production"
    by_output = {o["output"]: o for o in document["outputs"]}
    assert by_output["LABEL"]["flip_count"] == flips
    assert by_output["PROBABILITY"]["beyond"] > 0
    assert f"{flips} of 7 labels flipped" in (outputs / "diff.md").read_text()
    suite = ET.parse(outputs / "diff.xml").getroot()
    assert suite.get("failures") == "2"


@pytest.mark.integration
def test_an_unchanged_rebuild_passes(
    published_v1: tuple[Path, ModelFolder], tmp_path: Path, no_triton_leftovers: Path
) -> None:
    root, _ = published_v1
    settings = settings_for(root, (root / "staging").as_uri(), (root / "production").as_uri())
    rebuild = copy_model("screen_detector", tmp_path, version=2)
    artifact = build(rebuild, tmp_path / "dist", settings)
    report = diff_against_published(rebuild, artifact, settings)
    assert report.previous is not None and report.previous.version == 1
    assert report.passed, report.violations
    assert report.cases == 6
    assert [(o.output, len(o.flips), o.beyond) for o in report.outputs] == [
        ("LABEL", 0, 0),
        ("PROBABILITY", 0, 0),
    ]


@pytest.mark.integration
def test_the_first_version_is_skipped_with_a_note(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, (tmp_path / "s").as_uri(), (tmp_path / "p").as_uri())
    model = model_folder(MODELS_DIR / "screen_detector")
    report = diff_against_published(model, None, settings)
    assert report.skipped and report.passed
    assert "the first version has nothing to be compared with" in report.note


@pytest.mark.integration
def test_diff_against_a_version_published_to_s3(
    published_v1: tuple[Path, ModelFolder],
    tmp_path: Path,
    aws_env: str,
    no_triton_leftovers: Path,
) -> None:
    root, v1 = published_v1
    bucket = new_bucket(s3_client())
    settings = settings_for(tmp_path, f"s3://{bucket}/staging", f"s3://{bucket}/production")
    artifact_v1 = root / "dist" / "screen_detector_1.tar.gz"
    assert publish([artifact_v1], "main", settings=settings).ok
    candidate = copy_model("screen_detector", tmp_path, version=2, change_mean=True)
    artifact = build(candidate, tmp_path / "dist", settings)
    report = diff_against_published(candidate, artifact, settings)
    assert report.previous is not None and report.previous.uri == (
        f"s3://{bucket}/production/screen_detector_1.tar.gz"
    )
    labels = {o.output: o for o in report.outputs}["LABEL"]
    assert len(labels.flips) == expected_flips(v1, candidate)
    assert not report.passed


def _ci_pipeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_pipeline", REPO_ROOT / "ci" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ci_pipeline", module)
    spec.loader.exec_module(module)
    return module


def _pipeline_run(
    repo: Path, model: ModelFolder, staging: Path, production: Path, settings_root: Path
) -> tuple[list[Any], list[tuple[str, ...]]]:
    """ci/pipeline over ``model`` (a copy under ``repo/models``) with the real `mmetools diff` and
    `mmetools publish` as subprocesses; the build step is mmetools' real packager (the
    pipeline's own build is covered in test_pipeline.py), quality is skipped."""
    ci = _ci_pipeline()
    run_dir = "dist/runs/test"
    settings = settings_for(settings_root, staging.as_uri(), production.as_uri())
    environ = {
        "MMETOOLS_STAGING_URI": staging.as_uri(),
        "MMETOOLS_PRODUCTION_URI": production.as_uri(),
        "MMETOOLS_CACHE_DIR": str(settings.cache_dir),
        "CI": "false",
    }
    calls: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Any:
        calls.append(tuple(argv))
        if argv[1] == "build":
            build(model, cwd / run_dir, settings)
            return ci.CommandResult(0, "built\n")
        return ci.run_command(argv, cwd, {**env, **environ})

    options = ci.PipelineOptions(
        repo=repo,
        models=(model.name,),
        branch="feature/x",
        changed_since=None,
        run_dir=run_dir,
        quality=False,
        mmetools=str(Path(sys.executable).with_name("mmetools")),
    )
    console = Console(file=io.StringIO(), width=200, color_system=None)
    return ci.Pipeline(options, runner=runner, console=console).run(), calls


@pytest.mark.integration
def test_the_pipeline_publishes_a_first_version_with_the_diff_skipped(
    tmp_path: Path, example_weights: None
) -> None:
    model = copy_model("screen_detector", tmp_path, version=1)
    staging, production = tmp_path / "staging", tmp_path / "production"
    results, calls = _pipeline_run(tmp_path, model, staging, production, tmp_path)
    by_step = {r.step.name: r for r in results}
    assert by_step["diff"].status == "skipped", by_step["diff"].output
    assert "the first version has nothing to be compared with" in by_step["diff"].reason
    assert by_step["publish"].status == "passed", by_step["publish"].output
    assert list(staging.rglob("screen_detector_1.tar.gz"))  # staging of feature/x
    assert (tmp_path / "dist" / "reports" / "screen_detector-diff.md").is_file()


@pytest.mark.integration
def test_the_pipeline_stops_a_changed_model_at_diff_and_publishes_nothing(
    published_v1: tuple[Path, ModelFolder], tmp_path: Path, no_triton_leftovers: Path
) -> None:
    root, v1 = published_v1
    candidate = copy_model("screen_detector", tmp_path, version=2, change_mean=True)
    flips = expected_flips(v1, candidate)
    results, calls = _pipeline_run(tmp_path, candidate, root / "staging", root / "production", root)
    by_step = {r.step.name: r for r in results}
    assert by_step["diff"].status == "failed", by_step["diff"].output
    assert by_step["publish"].status == "skipped"
    assert not [c for c in calls if c[1] == "publish"]
    assert not list((root / "staging").rglob("screen_detector_2*"))
    reports = tmp_path / "dist" / "reports"
    document = json.loads((reports / "screen_detector-diff.json").read_text())
    assert {o["output"]: o for o in document["outputs"]}["LABEL"]["flip_count"] == flips
    assert f"{flips} of 7 labels flipped" in (reports / "screen_detector-diff.md").read_text()
    assert ET.parse(reports / "screen_detector-diff.xml").getroot().get("failures") == "2"
