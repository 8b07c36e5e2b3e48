"""Provenance goes into the published manifest sidecar at publish time; CI never says unknown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.release.publish_support import (
    make_artifact,
    settings_for,
    sha256_of,
    write_passing_evidence,
)

from mmetools.core.errors import PublishError
from mmetools.release.provenance import UNKNOWN, ci_run_id, git_info
from mmetools.release.publish import publish


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _repository(root: Path) -> Path:
    (root / "models/demo").mkdir(parents=True)
    (root / "models/demo/model_version.txt").write_text("1\n")
    _git(root, "init", "-q", "-b", "feature/x")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "demo")
    return make_artifact(root / "dist")


def test_published_manifest_names_commit_branch_dirty_and_ci_run(tmp_path: Path) -> None:
    artifact = _repository(tmp_path)
    built = artifact.with_name("demo_1.tar.gz.manifest.json").read_bytes()
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    environ = {"CI": "true", "GITHUB_RUN_ID": "4242"}
    report = publish([artifact], "feature/x", settings=settings, environ=environ)
    assert report.ok, report.failures
    published = json.loads((tmp_path / "pub/staging/feature~x/demo_1.tar.gz.manifest.json")
                           .read_text())  # fmt: skip
    assert published["provenance"] == {
        "git": {"commit": _git(tmp_path, "rev-parse", "HEAD"), "branch": "feature/x",
                "dirty": False},
        "published_branch": "feature/x",
        "ci": True,
        "ci_run_id": "4242",
        "tested": {"run_id": "t", "ci_run_id": None, "commit": "unknown", "dirty": False},
    }  # fmt: skip
    assert published["evidence"]["sha256"] == published["sha256"]
    # The build's own manifest is untouched: provenance never goes into the build's files.
    assert artifact.with_name("demo_1.tar.gz.manifest.json").read_bytes() == built


def test_ci_outside_git_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "dist")
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    assert git_info(tmp_path).commit == UNKNOWN
    with pytest.raises(PublishError, match="CI=true but .* is not in a git checkout"):
        publish([artifact], "main", settings=settings, environ={"CI": "true"})
    assert not (tmp_path / "pub").exists()
    # Outside CI the unknown commit is recorded as such (a local experiment).
    report = publish([artifact], "main", settings=settings, environ={})
    assert report.ok
    published = json.loads((tmp_path / "pub/production/demo_1.tar.gz.manifest.json").read_text())
    assert published["provenance"]["git"]["commit"] == UNKNOWN


def test_ci_run_id_comes_from_the_ci_system() -> None:
    assert ci_run_id({"CI_PIPELINE_ID": "7"}) == "7"
    assert ci_run_id({"MMETOOLS_CI_RUN_ID": "a", "GITHUB_RUN_ID": "b"}) == "a"
    assert ci_run_id({}) is None


# Issue 20 #7: an earlier build left in dist/ is not published under a later commit.


def test_evidence_of_an_earlier_commit_of_a_changed_model_is_refused(tmp_path: Path) -> None:
    artifact = _repository(tmp_path)
    tested = _git(tmp_path, "rev-parse", "HEAD")
    write_passing_evidence(artifact, sha256_of(artifact), commit=tested)
    settings = settings_for(tmp_path, "file:pub/staging", "file:pub/production")
    # A commit elsewhere: the model folder is the one tested, so its build is still this one.
    (tmp_path / "README.md").write_text("x\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "docs")
    report = publish([artifact], "feature/x", settings=settings, environ={})
    assert report.ok, report.failures
    published = json.loads((tmp_path / "pub/staging/feature~x/demo_1.tar.gz.manifest.json")
                           .read_text())  # fmt: skip
    assert published["provenance"]["tested"]["commit"] == tested
    # The model changes (its build now fails, say): the old bytes are not this commit's.
    (tmp_path / "models/demo/step.py").write_text("changed = True\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "change the model")
    with pytest.raises(PublishError) as error:
        publish([artifact], "main", settings=settings, environ={})
    assert (
        f"{artifact}: refusing to publish: its evidence is from a test run at commit "
        f"{tested[:12]} and the model folder changed since, but the checkout is at "
        f"{_git(tmp_path, 'rev-parse', 'HEAD')[:12]}"
    ) in str(error.value)
    assert not (tmp_path / "pub/production").exists()
