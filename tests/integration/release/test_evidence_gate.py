"""Issue 20 #1, the exact reproduction: a model whose fixtures fail is packaged (never tested),
evidence is written by hand for its sha256, and `publish --branch main` must not put it in
production; `--retest` tests those exact bytes, which fail, so it is still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.release.evidence_support import copy_model

from mmetools import cli
from mmetools.build.manifest import file_sha256
from mmetools.core.settings import load_settings
from mmetools.pipeline import package_model
from mmetools.release.evidence import ARTIFACT_TEST, evidence_path, read_evidence


@pytest.mark.integration
def test_hand_written_evidence_of_a_failing_model_never_reaches_production(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example_weights: None,
    no_triton_leftovers: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = copy_model("intent_classifier", tmp_path)
    fixture = model.path / "tests" / "fixtures" / "greeting.json"
    fixture.write_text(fixture.read_text().replace('"data": ["greeting"]', '"data": ["weather"]'))
    settings = load_settings(tmp_path)
    artifact = package_model(model, tmp_path / "dist", settings, validate=False,
                             fetch_weights=False).path  # fmt: skip
    target = settings.target
    hand_written = {
        "format": 2,
        "artifact": artifact.name,
        "sha256": file_sha256(artifact),
        "target": {"image": target.image, "triton_version": target.triton_version,
                   "python_version": target.python_version},
        "run": {"id": "by-hand", "ci_run_id": None, "commit": "unknown", "dirty": None},
        "tests": [{"kind": "mme_artifact", "passed": True, "triton_version": "2.51.0",
                   "mode": "bundled", "target_image": target.image,
                   "cases": [{"name": "greeting", "passed": True}], "error": None}],
    }  # fmt: skip
    evidence_path(artifact).write_text(json.dumps(hand_written))
    monkeypatch.chdir(tmp_path)
    published = tmp_path / ".published"

    assert cli.main(["publish", str(artifact), "--branch", "main"]) == 1
    assert f"{evidence_path(artifact)} is not signed" in capsys.readouterr().err
    assert not published.exists()

    # --retest runs the SageMaker MME artifact test on these bytes: the fixture fails.
    assert cli.main(["publish", str(artifact), "--branch", "main", "--retest"]) == 1
    assert "its mme_artifact test failed" in capsys.readouterr().err
    assert not published.exists()
    evidence = read_evidence(evidence_path(artifact))
    assert evidence is not None and evidence.signature is not None
    mme = evidence.test(ARTIFACT_TEST)
    assert mme is not None and not mme.passed
    assert {c.name: c.passed for c in mme.cases}["greeting"] is False
