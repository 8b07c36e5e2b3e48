"""Which TargetModels `mmetools smoke` calls, and its JUnit report (no endpoint needed)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from mmetools.core.errors import UsageError
from mmetools.deploy.smoke import CaseCheck, ModelSmoke, target_models
from mmetools.rendering.endpoints import smoke_lines
from mmetools.rendering.junit import write_smoke_junit
from support.deploy.declarations import STAGING, write_repo


def _repo(tmp_path: Path) -> Path:
    for name, version in (("alpha", 3), ("beta", 1)):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "model_version.txt").write_text(f"{version}\n")
        (folder / f"{name}_pipeline").mkdir()
        (folder / f"{name}_pipeline" / "config.pbtxt").write_text('platform: "ensemble"\n')
    (tmp_path / "models" / "README.md").write_text("not a model\n")
    return tmp_path


def test_model_names_resolve_to_their_current_artifact_under_the_branch_folder(
    tmp_path: Path,
) -> None:
    settings = write_repo(_repo(tmp_path), STAGING)
    assert target_models(settings, "staging", [], "feature/x") == [
        "feature~x/alpha_3.tar.gz", "feature~x/beta_1.tar.gz",
    ]  # fmt: skip
    assert target_models(settings, "staging", ["alpha_2.tar.gz", "main/beta_1.tar.gz"], "f") == [
        "f/alpha_2.tar.gz", "main/beta_1.tar.gz",
    ]  # fmt: skip
    assert target_models(settings, "production", ["alpha"], None) == ["alpha_3.tar.gz"]


def test_staging_smoke_without_a_branch_is_a_usage_error(tmp_path: Path) -> None:
    settings = write_repo(_repo(tmp_path), STAGING)
    with pytest.raises(UsageError, match="give --branch"):
        target_models(settings, "staging", ["alpha"], None)
    assert target_models(settings, "staging", ["main/alpha_3.tar.gz"], None) == [
        "main/alpha_3.tar.gz"
    ]


def test_a_wrong_answer_is_a_failure_naming_model_and_fixture(tmp_path: Path) -> None:
    wrong = ModelSmoke("f/alpha_3.tar.gz", "alpha", (
        CaseCheck("models/alpha/tests/fixtures/a.json", True, "", 1.5),
        CaseCheck("models/alpha/tests/fixtures/b.json", False, "LABEL: 1 of 1 values differ", 0.01),
    ))  # fmt: skip
    right = ModelSmoke("f/beta_1.tar.gz", "beta", (CaseCheck("x.json", True, "", 0.2),))
    missing = ModelSmoke("f/gamma_1.tar.gz", "gamma", (), "no fixtures to send: no folder")
    assert not wrong.passed and right.passed and not missing.passed
    assert wrong.failures() == [
        "f/alpha_3.tar.gz: fixture models/alpha/tests/fixtures/b.json: LABEL: 1 of 1 values differ"
    ]
    assert wrong.cold_ms == 1500 and wrong.warm_ms == 10
    lines = smoke_lines("acme", [wrong, right], warm_only=False)
    assert lines[0] == "acme f/alpha_3.tar.gz: FAILED (2 fixtures, cold 1500 ms, warm p50 10 ms)"
    write_smoke_junit("acme", [wrong, right, missing], tmp_path / "smoke.xml")
    root = ElementTree.parse(tmp_path / "smoke.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["f/alpha_3.tar.gz"].get("failures") == "1"
    failed = suites["f/alpha_3.tar.gz"].find("testcase[@name='models/alpha/tests/fixtures/b.json']")
    assert failed is not None and failed.find("failure") is not None
    assert suites["f/gamma_1.tar.gz"].get("errors") == "1"
