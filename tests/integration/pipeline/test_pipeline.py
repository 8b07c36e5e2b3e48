"""The pipeline (src/mmetools/pipeline.py, `mmetools build`): validation first, nothing of a
failed model in --out, evidence for exactly the bytes built, configs parsed once per run."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.model import config as model_config
from mmetools.cli import main
from mmetools.release.evidence import ARTIFACT_TEST, SOURCE_TEST, evidence_path, read_evidence
from mmetools.build.manifest import read_manifest
from mmetools.core.memo import StatMemo
from mmetools.model.folder import ModelFolder, model_folder
from mmetools.pipeline import STEP_NAMES, build
from mmetools.core.settings import load_settings
from support.pipeline.pipeline_support import _copy_model


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_build_leaves_exactly_the_passing_artifacts_with_their_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One model as it is, one whose fixture expects another label: it must fail its Triton test
    # and leave nothing in --out, while the other one is built.
    broken = _copy_model("screen_detector", tmp_path)
    fixture = broken / "tests/fixtures/screen_photo_jpeg.json"
    case = json.loads(fixture.read_text())
    case["expected"]["LABEL"]["data"] = ["natural"]
    fixture.write_text(json.dumps(case))

    parsed: collections.Counter[str] = collections.Counter()
    real_parse = model_config.parse_config

    def counting_parse(text: str, path: Path) -> model_config.ModelConfig:
        parsed[str(path)] += 1
        return real_parse(text, path)

    monkeypatch.setattr(model_config, "parse_config", counting_parse)
    monkeypatch.setattr(model_config, "_CONFIG_FILES", StatMemo())  # a fresh process's memo
    good = model_folder(MODELS_DIR / "intent_classifier")
    out = tmp_path / "out"
    report = build([good, ModelFolder(broken)], out, load_settings())

    steps = {(o.model, o.step): o.status for o in report.outcomes}
    assert {s: steps[("intent_classifier", s)] for s in STEP_NAMES} == dict.fromkeys(
        STEP_NAMES, "passed"
    )
    assert steps[("screen_detector", "test")] == "failed"
    assert steps[("screen_detector", "package")] == "skipped"
    assert not report.passed and report.failed_models == ("screen_detector",)
    assert sorted(p.name for p in out.iterdir()) == [
        "intent_classifier_1.evidence.json",
        "intent_classifier_1.tar.gz",
        "intent_classifier_1.tar.gz.manifest.json",
        "intent_classifier_1.tar.gz.sha256",
    ]

    # Each config.pbtxt (the model's 4, the broken copy's 4, the artifact's unpacked 4) was
    # parsed exactly once in the whole run (before this change: 66 times for one model).
    source_configs = sorted(str(p) for p in good.path.glob("*/config.pbtxt"))
    assert all(parsed[path] == 1 for path in source_configs), parsed
    # Except the unpacked copies of the Python steps without an env: the image emulation edits
    # them (testing/image_python.py), so they are read once before and once after the edit.
    edited = {f"{good.name}_preprocessing", f"{good.name}_postprocessing"}
    assert all(n == (2 if Path(p).parent.name in edited and p not in source_configs else 1)
               for p, n in parsed.items()), parsed  # fmt: skip
    assert len(parsed) == 12

    artifact = out / "intent_classifier_1.tar.gz"
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    manifest = read_manifest(out / "intent_classifier_1.tar.gz.manifest.json")
    assert manifest.sha256 == sha and manifest.provenance is None
    assert "git" not in json.loads((out / "intent_classifier_1.tar.gz.manifest.json").read_text())
    evidence = read_evidence(evidence_path(artifact))
    assert evidence is not None and evidence.sha256 == sha
    source, mme = evidence.test(SOURCE_TEST), evidence.test(ARTIFACT_TEST)
    assert source is not None and mme is not None and source.passed and mme.passed
    fixtures = sorted(p.stem for p in (good.fixtures_dir).glob("*.json"))
    assert sorted(c.name for c in mme.cases) == fixtures
    assert mme.triton_version == load_settings().triton.version and mme.mode

    # `mmetools package` (no tests) writes the same bytes as the build route.
    assert main(["package", str(good.path), "--out", str(tmp_path / "package")]) == 0
    packaged = tmp_path / "package" / "intent_classifier_1.tar.gz"
    assert hashlib.sha256(packaged.read_bytes()).hexdigest() == sha
    assert (tmp_path / "package" / "intent_classifier_1.tar.gz.manifest.json").read_bytes() == (
        out / "intent_classifier_1.tar.gz.manifest.json"
    ).read_bytes()

    # `mmetools test --artifact` writes the evidence again when it is lost, and publish accepts.
    evidence_path(artifact).unlink()
    monkeypatch.setenv("MMETOOLS_STAGING_URI", (tmp_path / "staging").as_uri())
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", (tmp_path / "production").as_uri())
    assert main(["publish", str(artifact), "--branch", "main"]) == 1  # refused: no evidence
    assert not (tmp_path / "staging").exists()
    assert main(["test", "--artifact", str(artifact)]) == 0
    refreshed = read_evidence(evidence_path(artifact))
    assert refreshed is not None and refreshed.sha256 == sha
    assert [t.kind for t in refreshed.tests] == [ARTIFACT_TEST]
    assert main(["publish", str(artifact), "--branch", "main"]) == 0
    published = read_manifest(tmp_path / "production" / "intent_classifier_1.tar.gz.manifest.json")
    assert published.provenance is not None and published.evidence is not None
    assert len(published.provenance["git"]["commit"]) == 40
    assert published.evidence["sha256"] == sha
