"""The evidence gate: publish refuses, before writing anything, an artifact whose evidence is
missing, for other bytes, failing, or without the SageMaker MME artifact test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.release.publish_support import make_artifact, settings_for, sha256_of

from mmetools.cli import main
from mmetools.core.errors import PublishError
from mmetools.release.evidence import (
    ARTIFACT_TEST,
    SOURCE_TEST,
    Evidence,
    RecordedTest,
    evidence_path,
    read_evidence,
    record_test,
    require_passing,
    write_evidence,
)
from mmetools.release.publish import publish


def _record(kind: str = ARTIFACT_TEST, passed: bool = True) -> RecordedTest:
    return RecordedTest(kind, passed, "2.51.0", "bundled", "image", ())  # type: ignore[arg-type]


def _publish(artifact: Path, tmp_path: Path) -> None:
    publish([artifact], "main", settings=settings_for(tmp_path, "file:pub/s", "file:pub/p"))


def test_passing_evidence_for_these_bytes_is_accepted(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    evidence = require_passing(artifact, sha256_of(artifact))
    assert evidence.test(ARTIFACT_TEST) is not None
    _publish(artifact, tmp_path)
    assert (tmp_path / "pub/p/demo_1.tar.gz").is_file()


def test_missing_evidence_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    with pytest.raises(PublishError) as error:
        _publish(artifact, tmp_path)
    assert str(error.value) == (
        f"{artifact}: refusing to publish: demo_1.evidence.json is missing, so nothing shows "
        f"these bytes passed their tests; run `mmetools test --artifact {artifact}` (or build it "
        "with `mmetools build`) and publish after it passes"
    )
    assert not (tmp_path / "pub").exists()


def test_evidence_for_other_bytes_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", seed=1)
    other = make_artifact(tmp_path / "other", seed=2)
    evidence_path(artifact).write_bytes(evidence_path(other).read_bytes())
    with pytest.raises(PublishError) as error:
        _publish(artifact, tmp_path)
    assert f"demo_1.evidence.json is for sha256 {sha256_of(other)[:12]}, not for these " in str(
        error.value
    )
    assert "the artifact changed after it was tested" in str(error.value)
    assert not (tmp_path / "pub").exists()


def test_failing_or_absent_artifact_test_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    sha = sha256_of(artifact)
    write_evidence(evidence_path(artifact), Evidence(artifact.name, sha, (_record(SOURCE_TEST),)))
    with pytest.raises(PublishError, match="has no SageMaker MME artifact test"):
        require_passing(artifact, sha)
    record_test(artifact, sha, _record(ARTIFACT_TEST, passed=False))
    with pytest.raises(PublishError, match="its mme_artifact test failed"):
        require_passing(artifact, sha)
    # A later pass of the same bytes refreshes the evidence and keeps the source test.
    evidence = record_test(artifact, sha, _record(ARTIFACT_TEST, passed=True))
    assert [t.kind for t in evidence.tests] == [SOURCE_TEST, ARTIFACT_TEST]
    assert require_passing(artifact, sha) == read_evidence(evidence_path(artifact))


def test_unreadable_evidence_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    evidence_path(artifact).write_text("{}")
    with pytest.raises(PublishError, match="demo_1.evidence.json is not readable evidence"):
        require_passing(artifact, sha256_of(artifact))


def test_recording_evidence_for_new_bytes_drops_the_old_records(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    record_test(artifact, "0" * 64, _record(SOURCE_TEST))
    evidence = record_test(artifact, sha256_of(artifact), _record(ARTIFACT_TEST))
    assert [t.kind for t in evidence.tests] == [ARTIFACT_TEST]
    assert json.loads(evidence_path(artifact).read_text())["sha256"] == sha256_of(artifact)


def test_cli_publish_exits_1_naming_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", "file:pub/s")
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", "file:pub/p")
    assert main(["publish", str(artifact), "--branch", "main"]) == 1
    assert f"run `mmetools test --artifact {artifact}`" in capsys.readouterr().err
    assert not (tmp_path / "pub").exists()
