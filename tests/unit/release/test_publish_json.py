"""`mmetools publish --json`: every destination's outcome with the URIs of the objects it holds
(ci/pipeline lists them in its summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.release.publish_support import make_artifact

from mmetools import cli


def test_publish_json_lists_every_object_per_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    staging, production = tmp_path / "staging", tmp_path / "production"
    monkeypatch.setenv("MMETOOLS_STAGING_URI", staging.as_uri())
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", production.as_uri())
    make_artifact(tmp_path / "dist", "alpha_1.tar.gz")
    argv = ["publish", "dist/alpha_1.tar.gz", "--branch", "main", "--json", "r/publish.json"]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "r" / "publish.json").read_text())
    assert report["ok"] and report["branch"] == "main" and report["failures"] == []
    by_role = {r["role"]: r for r in report["results"]}
    artifact = (staging / "main" / "alpha_1.tar.gz").as_uri()
    assert by_role["staging"]["objects"] == [
        artifact,
        f"{artifact}.sha256",
        f"{artifact}.manifest.json",
    ]
    assert by_role["production"]["uri"] == (production / "alpha_1.tar.gz").as_uri()
    for result in report["results"]:
        for uri in result["objects"]:
            assert Path(uri.removeprefix("file://")).is_file(), uri


def test_publish_json_into_a_folder_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMETOOLS_STAGING_URI", (tmp_path / "staging").as_uri())
    make_artifact(tmp_path / "dist", "alpha_1.tar.gz")
    (tmp_path / "r").mkdir()
    assert cli.main(["publish", "dist/alpha_1.tar.gz", "--branch", "b", "--json", "r"]) == 2
    assert not (tmp_path / "staging").exists()
