"""mmetools diff: comparisons (pure), thresholds, datasets, reports, and the real thing: a
candidate against a published version on one Triton through the SageMaker MME emulation."""

from __future__ import annotations

import importlib.util
import io
import json
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
from support.release.evidence_support import build, copy_model
from support.release.publish_support import new_bucket, s3_client, settings_for

from mmetools import cli
from mmetools.release.diff import diff_against_published
from mmetools.model.cases import load_fixtures
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.release.publish import publish
from mmetools.model.reference import run_reference

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
