"""Versions against production (release/versions.py): production's highest is the baseline,
versions only go up, and a branch fails the way main would, before staging is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.release.publish_support import make_artifact, settings_for, sha256_of
from support.release.published_support import _publish

from mmetools import cli
from mmetools.release.publish import publish
from mmetools.release.published import find_previous


def _destinations(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "staging").as_uri(), (tmp_path / "production").as_uri()


def test_a_branch_build_of_a_version_production_holds_with_other_bytes_fails_before_staging(
    tmp_path: Path,
) -> None:
    """Issue 21: a forgotten bump published a different demo_1 to the branch's staging."""
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "v1", tmp_path, staging, production, "demo_1.tar.gz")
    settings = settings_for(tmp_path, staging, production)
    retrained = make_artifact(tmp_path / "branch", "demo_1.tar.gz", seed=9)
    report = publish([retrained], "feature/retrain", settings=settings)
    [failure] = report.failures
    assert failure.role == "production" and report.results == ()
    assert failure.message.startswith(
        "models/demo/model_version.txt: version 1 is already in production "
        f"({production}/demo_1.tar.gz) with different bytes"
    )
    assert "run `mmetools bump models/demo` (it writes 2)" in failure.message
    assert not (tmp_path / "staging" / "feature~retrain").exists()  # nothing written


def test_a_re_release_of_the_same_bytes_passes_on_a_branch(tmp_path: Path) -> None:
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "v1", tmp_path, staging, production, "demo_1.tar.gz")
    settings = settings_for(tmp_path, staging, production)
    same = tmp_path / "v1" / "dist" / "demo_1.tar.gz"
    report = publish([same], "feature/other", settings=settings)
    assert report.ok, report.failures
    assert (tmp_path / "staging" / "feature~other" / "demo_1.tar.gz").is_file()


def test_going_backwards_is_refused_even_on_the_production_branch(tmp_path: Path) -> None:
    """Issue 20 #8: production held v1 and v3; main set v2, and v2 was published below v3."""
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "old", tmp_path, staging, production, "demo_1.tar.gz", "demo_3.tar.gz")
    settings = settings_for(tmp_path, staging, production)
    v2 = make_artifact(tmp_path / "dist", "demo_2.tar.gz", seed=5)
    report = publish([v2], "main", settings=settings)
    [failure] = report.failures
    assert failure.message == (
        "models/demo/model_version.txt: version 2 is below production's highest, "
        f"{production}/demo_3.tar.gz: versions only go up (going backwards would serve an older "
        "model in a newer one's place); run `mmetools bump models/demo` (it writes 4)"
    )
    assert not (tmp_path / "production" / "demo_2.tar.gz").exists()
    assert not (tmp_path / "staging" / "main" / "demo_2.tar.gz").exists()


def test_the_baseline_is_productions_highest_not_a_higher_branch_staging(tmp_path: Path) -> None:
    """What production serves is what a candidate replaces: a branch's staged v2 is no baseline
    while production holds v1."""
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "v1", tmp_path, staging, production, "demo_1.tar.gz")
    _publish(tmp_path / "v2", tmp_path, staging, production, "demo_2.tar.gz", branch="feature/x")
    settings = settings_for(tmp_path, staging, production)
    found = find_previous("demo", 3, settings, branch="feature/x")
    assert found is not None and (found.role, found.version) == ("production", 1)
    # Without a production version, the branch's staging is the baseline.
    alone = settings_for(tmp_path, staging, (tmp_path / "empty").as_uri())
    found = find_previous("demo", 3, alone, branch="feature/x")
    assert found is not None and (found.role, found.version) == ("staging", 2)


def _model(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / "models" / "demo"
    (folder / "demo_pipeline").mkdir(parents=True)
    (folder / "demo_pipeline" / "config.pbtxt").write_text('name: "demo_pipeline"\n')
    (folder / "model_version.txt").write_text(version)
    return folder


def test_bump_writes_one_above_production_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "old", tmp_path, staging, production, "demo_1.tar.gz", "demo_3.tar.gz")
    folder = _model(tmp_path, "1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", staging)
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", production)
    assert cli.main(["bump", "models/demo"]) == 0
    assert (folder / "model_version.txt").read_text() == "4\n"
    assert "models/demo/model_version.txt: 1 -> 4 (production holds up to 3)" in (
        capsys.readouterr().out
    )
    assert cli.main(["bump", "models/demo"]) == 0  # the folder is ahead: one above it
    assert (folder / "model_version.txt").read_text() == "5\n"
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", (tmp_path / "none").as_uri())
    other = _model(tmp_path / "b", "7")
    assert cli.main(["bump", str(other)]) == 0
    assert (other / "model_version.txt").read_text() == "8\n"
    assert "production holds no version" in capsys.readouterr().out


def test_bump_of_no_model_folder_is_a_usage_error(tmp_path: Path) -> None:
    assert cli.main(["bump", str(tmp_path / "nope")]) == 2


def test_the_same_name_check_reads_bytes_not_sidecars(tmp_path: Path) -> None:
    """The comparison is with what production stores (a folder store hashes the file)."""
    staging, production = _destinations(tmp_path)
    _publish(tmp_path / "v1", tmp_path, staging, production, "demo_1.tar.gz")
    stored = tmp_path / "production" / "demo_1.tar.gz"
    original = tmp_path / "v1" / "dist" / "demo_1.tar.gz"
    assert sha256_of(stored) == sha256_of(original)
    stored.write_bytes(b"replaced behind mmetools' back")
    report = publish([original], "feature/y", settings=settings_for(tmp_path, staging, production))
    assert "already in production" in report.failures[0].message


def test_a_model_folder_at_productions_version_is_compared_by_its_files(tmp_path: Path) -> None:
    """`mmetools diff models/NAME` (no tarball): the folder's own files against the published
    manifest's members; the same files are a re-release, other weights are refused."""
    import shutil

    from conftest import MODELS_DIR

    from mmetools.build.identity import folder_identity
    from mmetools.build.manifest import Manifest, ManifestMember, file_sha256, write_manifest
    from mmetools.build.package import collect_members
    from mmetools.core.errors import VersionError
    from mmetools.model.folder import model_folder
    from mmetools.release.versions import Candidate, check_candidate

    copy = tmp_path / "models" / "screen_detector"
    shutil.copytree(MODELS_DIR / "screen_detector", copy, ignore=shutil.ignore_patterns("*.onnx"))
    weights = copy / "screen_detector_inferencer" / "1" / "model.onnx"
    weights.write_bytes(b"weights v1")
    model = model_folder(copy)
    members = tuple(
        ManifestMember(m.name, "file", m.size, file_sha256(m.source))
        for m in collect_members(model, include_env=False)
        if m.kind == "file" and m.source is not None
    )
    staging, production = _destinations(tmp_path)
    (tmp_path / "production").mkdir()
    stored = tmp_path / "production" / "screen_detector_1.tar.gz"
    stored.write_bytes(b"the tarball")
    manifest = Manifest("screen_detector", 1, sha256_of(stored), 11, 0, members,
                        model_folder="models/screen_detector")  # fmt: skip
    write_manifest(tmp_path / "production" / "screen_detector_1.tar.gz.manifest.json", manifest)
    settings = settings_for(tmp_path, staging, production)

    def candidate() -> Candidate:
        return Candidate("screen_detector", 1, str(model.version_file),
                         identity=folder_identity(model))  # fmt: skip

    state = check_candidate(candidate(), settings)
    assert state.same is not None and state.same.version == 1
    weights.write_bytes(b"weights v2")  # retrained, version forgotten
    with pytest.raises(VersionError, match="its model files differ from the folder's"):
        check_candidate(candidate(), settings)
