"""Accepting a reviewed diff (release/diff/acceptance.py), the model's content identity
(build/identity.py), and the reports of outputs that changed between versions."""

from __future__ import annotations

from typing import Any

import hashlib
import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR

from mmetools import cli
from mmetools.build.identity import folder_identity, tarball_identity
from mmetools.build.package import collect_members, write_tarball
from mmetools.core.errors import ConfigError, UsageError
from mmetools.model.cases import EnsembleSignature
from mmetools.model.cases.values import TensorSpec
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.release.diff import DiffReport, OutputThresholds, compare_output
from mmetools.release.diff.acceptance import (
    ACCEPTANCE_FILE,
    check_acceptance,
    read_acceptance,
    record_acceptance,
)
from mmetools.release.diff.run import output_changes
from mmetools.release.published import PublishedVersion
from mmetools.rendering.junit import write_diff_junit
from mmetools.rendering.markdown import markdown_report, next_steps

PREVIOUS = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
LABELS = np.array([[b"screen"], [b"not_screen"]], dtype=object)


def _model(tmp_path: Path) -> ModelFolder:
    copy = tmp_path / "models" / "screen_detector"
    shutil.copytree(MODELS_DIR / "screen_detector", copy, ignore=shutil.ignore_patterns("*.onnx"))
    (copy / "screen_detector_inferencer" / "1" / "model.onnx").write_bytes(b"weights v2")
    return model_folder(copy)


def _report(
    model: ModelFolder, shift: float = 0.1, flips: int = 1, **changes: object
) -> DiffReport:
    candidate = PREVIOUS + np.float32(shift)
    flipped = LABELS.copy()
    for index in range(flips):
        flipped[index, 0] = b"screen" if LABELS[index, 0] == b"not_screen" else b"not_screen"
    outputs = (
        compare_output("LABEL", "BYTES", [("a", LABELS, flipped)], OutputThresholds()),
        compare_output("PROBABILITY", "FP32", [("a", PREVIOUS, candidate)], OutputThresholds()),
    )
    previous = PublishedVersion("production", model.name, 1, "file:///p/screen_detector_1.tar.gz")
    report = DiffReport(
        model.name,
        str(model.path),
        previous,
        cases=1,
        outputs=outputs,
        model_dir="models/screen_detector",
        candidate_version=2,
        candidate_identity=folder_identity(model),
        previous_sha256="ab" * 32,
    )
    return replace(report, **changes)  # type: ignore[arg-type]


def _checked(model: ModelFolder, report: DiffReport) -> DiffReport:
    return replace(report, acceptance=check_acceptance(model, report))


def test_an_unreviewed_change_fails_and_says_how_to_accept_it(tmp_path: Path) -> None:
    model = _model(tmp_path)
    report = _checked(model, _report(model))
    assert not report.passed and report.acceptance is None
    steps = next_steps(report)
    assert steps[-1] == "  mmetools diff models/screen_detector --accept"
    assert "models/screen_detector/diff-acceptance.toml" in steps[-2]
    assert (
        markdown_report(report).rstrip().endswith("mmetools diff models/screen_detector --accept")
    )


def test_an_accepted_change_passes_only_while_it_measures_the_same(tmp_path: Path) -> None:
    model = _model(tmp_path)
    report = _report(model)
    written = record_acceptance(model, report, "mmetools diff models/screen_detector --accept")
    assert written == model.path / ACCEPTANCE_FILE
    text = written.read_text()
    assert "candidate_version = 2" in text and "previous_version = 1" in text
    assert f'candidate_identity = "{folder_identity(model)}"' in text
    assert "flips = 1" in text and "beyond = 4" in text
    accepted = _checked(model, report)
    assert accepted.passed and accepted.accepted and next_steps(accepted) == []
    assert "**PASS** (an accepted change)" in markdown_report(accepted)
    # The same change measured on another CPU: last bits differ, still the accepted change.
    assert _checked(model, _report(model, shift=0.1 + 1e-7)).passed
    # Other figures: more flips, a bigger shift.
    for other in (_report(model, flips=2), _report(model, shift=0.3)):
        checked = _checked(model, other)
        assert not checked.passed and checked.acceptance is not None
        assert not checked.acceptance.matched
    more_flips = _checked(model, _report(model, flips=2))
    assert more_flips.acceptance is not None
    assert more_flips.acceptance.reasons == ("LABEL: accepted 1 flips, this diff 2",)
    assert "records another change than this diff measures" in "\n".join(next_steps(more_flips))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"candidate_version": 3}, "candidate_version: accepted 2, this diff 3"),
        ({"previous_sha256": "cd" * 32}, "previous_sha256: accepted"),
        ({"previous": PublishedVersion("production", "screen_detector", 2, "u")},
         "previous_version: accepted 1, this diff 2"),
        ({"cases": 2}, "inputs: accepted 1, this diff 2"),
    ],
)  # fmt: skip
def test_an_acceptance_never_carries_over(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    model = _model(tmp_path)
    record_acceptance(model, _report(model), "mmetools diff --accept")
    checked = _checked(model, _report(model, **change))
    assert not checked.passed and checked.acceptance is not None
    assert any(r.startswith(reason) for r in checked.acceptance.reasons), checked.acceptance


def test_new_weights_are_a_new_change(tmp_path: Path) -> None:
    model = _model(tmp_path)
    record_acceptance(model, _report(model), "mmetools diff --accept")
    (model.path / "screen_detector_inferencer" / "1" / "model.onnx").write_bytes(b"weights v3")
    checked = _checked(model, _report(model))  # same figures, other weights
    assert not checked.passed and checked.acceptance is not None
    assert checked.acceptance.reasons[0].startswith("candidate_identity: accepted")


def test_failing_inputs_are_never_acceptable(tmp_path: Path) -> None:
    model = _model(tmp_path)
    broken = _report(model, errors=("input 'a' fails on the candidate only: boom",))
    with pytest.raises(UsageError, match="cannot be accepted"):
        record_acceptance(model, broken, "mmetools diff --accept")
    record_acceptance(model, _report(model), "mmetools diff --accept")
    assert not _checked(model, replace(_report(model), errors=broken.errors)).passed


def test_nothing_to_accept_within_thresholds(tmp_path: Path) -> None:
    model = _model(tmp_path)
    assert record_acceptance(model, _report(model, shift=0.0, flips=0), "x") is None
    assert not (model.path / ACCEPTANCE_FILE).exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("max_abs = ", "max_abs = nan #"), "max_abs must be a number >= 0, got nan"),
        (("flips = 1", "flips = -1"), "flips must be an integer >= 0"),
        (("inputs = 1", "inputs = 1\nextra = 2"), "has no setting 'extra'"),
        (("format = 1", "format = [1"), "not a readable TOML file"),
    ],
)
def test_a_bad_acceptance_file_names_the_file_and_key(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    model = _model(tmp_path)
    path = record_acceptance(model, _report(model), "x")
    assert path is not None
    path.write_text(path.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError, match=message) as error:
        read_acceptance(model)
    assert str(path) in str(error.value)


def test_the_acceptance_file_is_not_in_the_artifact_and_leaves_its_bytes_alone(
    tmp_path: Path,
) -> None:
    model = _model(tmp_path)

    def tarball() -> bytes:
        out = io.BytesIO()
        write_tarball(collect_members(model, include_env=False), out)
        return out.getvalue()

    before = tarball()
    record_acceptance(model, _report(model), "x")
    assert (model.path / ACCEPTANCE_FILE).is_file()
    assert ACCEPTANCE_FILE not in {
        m.name.rsplit("/", 1)[-1] for m in collect_members(model, include_env=False)
    }
    assert tarball() == before
    # The tarball and the folder it came from have one identity.
    (tmp_path / "m_2.tar.gz").write_bytes(before)
    assert tarball_identity(tmp_path / "m_2.tar.gz") == folder_identity(model)


# -------------------------------------------------------------------------------------------------
# Issue 20 #12: outputs added, removed or renamed between versions


def _signature(**outputs: TensorSpec) -> EnsembleSignature:
    return EnsembleSignature("m", 0, {"X": TensorSpec("FP32", (1,))}, outputs)


def test_a_renamed_output_is_compared_under_both_names() -> None:
    spec = TensorSpec("FP32", (2,))
    label = TensorSpec("BYTES", (1,))
    pairs, added, removed, renamed = output_changes(
        _signature(LABEL=label, PROBABILITY=spec), _signature(LABEL=label, SCORE=spec)
    )
    assert pairs == [("LABEL", "LABEL"), ("PROBABILITY", "SCORE")]
    assert (added, removed, renamed) == ((), (), (("PROBABILITY", "SCORE"),))
    pairs, added, removed, renamed = output_changes(
        _signature(LABEL=label), _signature(LABEL=label, SCORE=spec)
    )
    assert (pairs, added, removed, renamed) == ([("LABEL", "LABEL")], ("SCORE",), (), ())
    # Two outputs gone, one new of another type: no guessing, removed and added.
    _, added, removed, renamed = output_changes(
        _signature(A=spec, B=spec), _signature(C=TensorSpec("INT64", (2,)))
    )
    assert (added, removed, renamed) == (("C",), ("A", "B"), ())


def test_removed_and_renamed_outputs_are_reported_as_such(tmp_path: Path) -> None:
    model = _model(tmp_path)
    report = _report(model, shift=0.0, flips=0, removed=("EXTRA",), renamed=(("P", "Q"),))
    assert not report.passed
    assert report.violations == (
        "output 'EXTRA' of the previous version is gone (clients reading it break)",
        "output 'P' was renamed 'Q' (compared as one output; clients reading 'P' break)",
    )
    text = markdown_report(report)
    assert "Outputs: added: none, removed: EXTRA, renamed: P -> Q." in text
    write_diff_junit(report, tmp_path / "diff.xml")
    assert 'name="outputs"' in (tmp_path / "diff.xml").read_text()
    # Added outputs are news, not a failure.
    assert _report(model, shift=0.0, flips=0, added=("NEW",)).passed


def test_an_output_no_input_reached_is_not_a_pass() -> None:
    diff = compare_output("PROBABILITY", "FP32", [], OutputThresholds())
    assert not diff.passed
    assert diff.violations == ("PROBABILITY: not compared: no input was answered by both versions",)


# -------------------------------------------------------------------------------------------------
# Issue 20 #11: a broken published previous version is named by its URI, without a traceback


def _published_previous(tmp_path: Path, tarball: bytes, sidecar: bytes) -> Path:
    production = tmp_path / "production"
    production.mkdir()
    (production / "screen_detector_1.tar.gz").write_bytes(tarball)
    (production / "screen_detector_1.tar.gz.sha256").write_bytes(sidecar)
    return production


def _diff_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    model = _model(tmp_path)
    (model.path / "model_version.txt").write_text("2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", (tmp_path / "production").as_uri())
    code = cli.main(["diff", "models/screen_detector", "--branch", "main"])
    return code, capsys.readouterr().err


def test_a_previous_sha256_that_is_not_utf8_is_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    production = _published_previous(tmp_path, b"whatever", b"\xff\xfe not text")
    code, err = _diff_cli(tmp_path, monkeypatch, capsys)
    assert code == 1
    uri = (production / "screen_detector_1.tar.gz").as_uri()
    assert f"error: {uri}.sha256: not UTF-8 text (byte 0)" in err
    assert "Traceback" not in err


def test_a_truncated_previous_tarball_is_named_by_its_published_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = io.BytesIO()
    write_tarball(collect_members(_model(tmp_path / "v1"), include_env=False), whole)
    truncated = whole.getvalue()[: len(whole.getvalue()) // 2]
    digest = hashlib.sha256(truncated).hexdigest()
    production = _published_previous(
        tmp_path, truncated, f"{digest}  screen_detector_1.tar.gz\n".encode()
    )
    code, err = _diff_cli(tmp_path, monkeypatch, capsys)
    assert code == 1, err
    uri = (production / "screen_detector_1.tar.gz").as_uri()
    assert "error: the published previous version cannot be read: " in err
    assert uri in err and "mmetools-diff-" not in err and "Traceback" not in err, err
