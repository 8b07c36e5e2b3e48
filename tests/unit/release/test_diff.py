"""mmetools diff: comparisons (pure), thresholds, datasets, reports, and the real thing: a
candidate against a published version on one Triton through the SageMaker MME emulation."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR

from mmetools.release.diff import (
    DiffReport,
    OutputThresholds,
    compare_output,
    load_dataset,
    load_thresholds,
)
from mmetools.rendering.junit import write_diff_junit as write_junit_xml
from mmetools.rendering.markdown import markdown_report
from mmetools.core.errors import ConfigError, FixtureError, UsageError
from mmetools.model.cases import EnsembleSignature
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.release.published import PublishedVersion

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
        ("atol = -1\n", "atol must be a finite number >= 0"),
        ("max_flip_rate = nan\n", "max_flip_rate must be a finite number >= 0, got nan"),
        (
            "[outputs.LABEL]\nmax_flip_rate = nan\n",
            r"\[outputs.LABEL\] max_flip_rate must be a finite",
        ),
        ("rtol = inf\n", "rtol must be a finite number >= 0, got inf"),
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
