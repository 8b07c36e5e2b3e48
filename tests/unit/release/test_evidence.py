"""The evidence gate: publish refuses, before writing anything, an artifact whose evidence is
missing, not signed with the key this process holds (hand-written, edited, from another machine),
for other bytes or another serving target, failing, or without the SageMaker MME artifact test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.release.publish_support import (
    make_artifact,
    settings_for,
    sha256_of,
    signing_key_for_tests,
    write_passing_evidence,
)

from mmetools.cli import main
from mmetools.core.errors import ConfigError, PublishError
from mmetools.core.targets import ServingTarget, resolve_target
from mmetools.release.evidence import (
    ARTIFACT_TEST,
    SOURCE_TEST,
    Evidence,
    RecordedTest,
    EvidenceTarget,
    EvidenceRun,
    evidence_path,
    read_evidence,
    record_test,
    require_passing,
    write_evidence,
)
from mmetools.release.evidence_key import KEY_VARIABLE, EvidenceKey, key_file, load_evidence_key
from mmetools.release.publish import publish


def _record(kind: str = ARTIFACT_TEST, passed: bool = True) -> RecordedTest:
    return RecordedTest(kind, passed, "2.51.0", "bundled", "image", ())  # type: ignore[arg-type]


def _target(image: str = "nvcr.io/nvidia/tritonserver:24.12-py3") -> ServingTarget:
    return resolve_target(image, {}, where="test")


RUN = EvidenceRun("r", None, "unknown", None)


def _require(artifact: Path, sha256: str | None = None) -> Evidence:
    return require_passing(
        artifact, sha256 or sha256_of(artifact), signing_key_for_tests(), _target()
    )


def _publish(artifact: Path, tmp_path: Path) -> None:
    publish([artifact], "main", settings=settings_for(tmp_path, "file:pub/s", "file:pub/p"))


def test_passing_evidence_for_these_bytes_is_accepted(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    evidence = _require(artifact)
    assert evidence.test(ARTIFACT_TEST) is not None
    assert evidence.target == EvidenceTarget.of(_target())
    _publish(artifact, tmp_path)
    assert (tmp_path / "pub/p/demo_1.tar.gz").is_file()


def test_missing_evidence_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    with pytest.raises(PublishError) as error:
        _publish(artifact, tmp_path)
    assert str(error.value) == (
        f"{artifact}: refusing to publish: {evidence_path(artifact)} is missing, so nothing "
        f"shows these bytes passed their tests; run `mmetools test --artifact {artifact}` (or "
        "build it with `mmetools build`), or publish with --retest"
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


# Issue 20 #1: evidence written by hand (or by anything but a test run holding the key).


def _hand_written(artifact: Path, **changes: object) -> dict[str, object]:
    """The evidence a person writes for the artifact's sha256: format 2, passing, no key."""
    data: dict[str, object] = {
        "format": 2,
        "artifact": artifact.name,
        "sha256": sha256_of(artifact),
        "target": EvidenceTarget.of(_target()).as_json(),
        "run": RUN.as_json(),
        "tests": [_record().as_json()],
        **changes,
    }
    evidence_path(artifact).write_text(json.dumps(data))
    return data


def test_hand_written_evidence_is_refused_naming_the_file(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    _hand_written(artifact)
    with pytest.raises(PublishError) as error:
        _publish(artifact, tmp_path)
    assert f"{evidence_path(artifact)} is not signed" in str(error.value)
    assert "or publish with --retest" in str(error.value)
    assert not (tmp_path / "pub").exists()


def test_format_1_evidence_of_an_older_mmetools_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    evidence_path(artifact).write_text(json.dumps({
        "format": 1, "artifact": artifact.name, "sha256": sha256_of(artifact),
        "tests": [_record().as_json()],
    }))  # fmt: skip
    with pytest.raises(PublishError, match="is evidence format 1 .* older mmetools or by hand"):
        _publish(artifact, tmp_path)
    assert not (tmp_path / "pub").exists()


def test_a_forged_signature_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    key = signing_key_for_tests()
    _hand_written(artifact, signature={"algorithm": "hmac-sha256", "key_id": key.key_id,
                                       "value": "0" * 64})  # fmt: skip
    with pytest.raises(PublishError, match="does not match its signature: it was edited"):
        _require(artifact)


def test_signed_evidence_edited_afterwards_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    data = json.loads(evidence_path(artifact).read_text())
    data["tests"][0]["passed"] = True
    data["target"]["image"] = "nvcr.io/nvidia/tritonserver:24.12-py3"  # unchanged values: fine
    evidence_path(artifact).write_text(json.dumps(data))
    _require(artifact)
    data["run"]["commit"] = "f" * 40  # any change of content breaks the signature
    evidence_path(artifact).write_text(json.dumps(data))
    with pytest.raises(PublishError, match="does not match its signature"):
        _require(artifact)


def test_evidence_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    other = EvidenceKey(b"x" * 64, "elsewhere")
    write_passing_evidence(artifact, sha256_of(artifact), key=other)
    with pytest.raises(PublishError) as error:
        _require(artifact)
    assert f"is signed with another key (key id {other.key_id}; this process holds " in str(
        error.value
    )
    assert other.secret.decode() not in str(error.value)


def test_no_key_on_this_machine_refuses_signed_evidence(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    with pytest.raises(PublishError, match="this machine holds no evidence key"):
        require_passing(artifact, sha256_of(artifact), None, _target())


def test_the_key_file_is_private_and_made_once(tmp_path: Path) -> None:
    first = load_evidence_key(tmp_path, {}, create=True)
    assert first is not None and first == load_evidence_key(tmp_path, {}, create=True)
    assert key_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert first.secret.decode() not in repr(first)
    key_file(tmp_path).chmod(0o644)
    with pytest.raises(ConfigError, match="must be the user's own and private .*chmod 600"):
        load_evidence_key(tmp_path, {}, create=False)
    assert load_evidence_key(tmp_path / "none", {}, create=False) is None


def test_a_ci_key_from_the_environment_wins_and_must_be_long(tmp_path: Path) -> None:
    key = load_evidence_key(tmp_path, {KEY_VARIABLE: "k" * 40}, create=True)
    assert key is not None and key.source == KEY_VARIABLE and not key_file(tmp_path).exists()
    with pytest.raises(ConfigError, match=f"{KEY_VARIABLE} is 5 characters long"):
        load_evidence_key(tmp_path, {KEY_VARIABLE: "short"}, create=True)


def test_recording_never_carries_an_unsigned_pass_into_signed_evidence(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    sha = sha256_of(artifact)
    _hand_written(artifact, tests=[_record(SOURCE_TEST).as_json()])
    target = EvidenceTarget.of(_target())
    evidence = record_test(artifact, sha, _record(ARTIFACT_TEST), signing_key_for_tests(), target,
                           RUN)  # fmt: skip
    assert [t.kind for t in evidence.tests] == [ARTIFACT_TEST]


# Issue 20 #21: the evidence names the target it was tested for; publish refuses another.


def test_evidence_for_another_target_of_the_same_python_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    tested = EvidenceTarget.of(_target("nvcr.io/nvidia/tritonserver:25.01-py3"))
    assert tested.python_version == _target().python_version  # same Python, other image
    write_passing_evidence(artifact, sha256_of(artifact), target=tested)
    with pytest.raises(PublishError) as error:
        _publish(artifact, tmp_path)
    assert (
        "shows a test for the target nvcr.io/nvidia/tritonserver:25.01-py3 (Triton 2.54.0, "
        "Python 3.12), but the serving target is nvcr.io/nvidia/tritonserver:24.12-py3 "
        "(Triton 2.53.0, Python 3.12)"
    ) in str(error.value)
    assert not (tmp_path / "pub").exists()


def test_failing_or_absent_artifact_test_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist", evidence=False)
    sha = sha256_of(artifact)
    key, target = signing_key_for_tests(), EvidenceTarget.of(_target())
    source_only = Evidence(artifact.name, sha, (_record(SOURCE_TEST),), target, RUN)
    write_evidence(evidence_path(artifact), source_only, key)
    with pytest.raises(PublishError, match="has no SageMaker MME artifact test"):
        _require(artifact, sha)
    record_test(artifact, sha, _record(ARTIFACT_TEST, passed=False), key, target, RUN)
    with pytest.raises(PublishError, match="its mme_artifact test failed"):
        _require(artifact, sha)
    # A later pass of the same bytes refreshes the evidence and keeps the source test.
    evidence = record_test(artifact, sha, _record(ARTIFACT_TEST, passed=True), key, target, RUN)
    assert [t.kind for t in evidence.tests] == [SOURCE_TEST, ARTIFACT_TEST]
    assert _require(artifact, sha) == read_evidence(evidence_path(artifact))


def test_unreadable_evidence_is_refused(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    evidence_path(artifact).write_text("{}")
    with pytest.raises(PublishError, match="demo_1.evidence.json is not readable evidence"):
        _require(artifact)


def test_recording_evidence_for_new_bytes_drops_the_old_records(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    key, target = signing_key_for_tests(), EvidenceTarget.of(_target())
    record_test(artifact, "0" * 64, _record(SOURCE_TEST), key, target, RUN)
    evidence = record_test(artifact, sha256_of(artifact), _record(ARTIFACT_TEST), key, target, RUN)
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
