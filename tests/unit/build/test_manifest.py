"""The typed manifest: one reader/writer; `{}` or any schema violation is refused by field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mmetools.core.errors import ArtifactError
from mmetools.build.manifest import Manifest, ManifestMember, member_differences, read_manifest
from mmetools.build.manifest import write_manifest
from mmetools.release.publish import explain_difference

SHA = "a" * 64
MANIFEST = Manifest(
    model="demo",
    version=3,
    sha256=SHA,
    size=10,
    uncompressed_size=20,
    members=(
        ManifestMember("demo_model", "dir"),
        ManifestMember("demo_model/1/model.onnx", "file", 5, "b" * 64),
        ManifestMember("demo_pre/python_env.tar.gz", "file", 5, "c" * 64),
    ),
    env_hash="d" * 64,
    triton_version="2.51.0",
    mmetools_version="0.1",
    model_folder="models/demo",
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "demo_3.manifest.json"
    write_manifest(path, MANIFEST)
    assert read_manifest(path) == MANIFEST
    assert "provenance" not in json.loads(path.read_text())
    published = MANIFEST.published({"git": {"commit": "abc"}}, {"sha256": SHA})
    write_manifest(path, published)
    assert read_manifest(path) == published


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {}, "field 'format' is missing"),
        (lambda d: {**d, "format": 1}, "field 'format' is 1, this mmetools reads format 2"),
        (lambda d: {k: v for k, v in d.items() if k != "members"}, "field 'members' is missing"),
        (lambda d: {**d, "members": []}, "field 'members' must be a non-empty list, got []"),
        (lambda d: {**d, "sha256": "xyz"}, "field 'sha256' must be 64 lowercase hex digits"),
        (lambda d: {**d, "version": 0}, "field 'version' must be an integer >= 1, got 0"),
        (lambda d: {**d, "version": True}, "field 'version' must be an integer >= 1, got True"),
        (lambda d: {**d, "artifact": "other_3.tar.gz"}, "field 'artifact' is 'other_3.tar.gz'"),
        (
            lambda d: {**d, "members": [{"path": "x", "type": "file", "size": 1}]},
            "field 'members[0]' (x) must be a dir, or a file with an integer 'size' and a 'sha256'",
        ),
        (lambda d: {**d, "target": "img"}, "field 'target' must be an object or null"),
        (lambda d: [], "a manifest must be a JSON object"),
    ],
)
def test_schema_violations_name_the_field(change: object, message: str, tmp_path: Path) -> None:
    path = tmp_path / "demo_3.manifest.json"
    path.write_text(json.dumps(change(MANIFEST.as_json())))  # type: ignore[operator]
    with pytest.raises(ArtifactError) as error:
        read_manifest(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_member_differences_and_their_explanation() -> None:
    env_only = replace(
        MANIFEST,
        members=(*MANIFEST.members[:2], ManifestMember("demo_pre/python_env.tar.gz", "file", 6,
                                                       "e" * 64)),
    )  # fmt: skip
    assert member_differences(MANIFEST, env_only) == ["changed demo_pre/python_env.tar.gz"]
    assert "only the packed env differs: the build was not reproducible" in explain_difference(
        MANIFEST, env_only
    )
    weights = replace(MANIFEST, members=(MANIFEST.members[0], MANIFEST.members[2]))
    explained = explain_difference(MANIFEST, weights)
    assert "members that differ: removed demo_model/1/model.onnx" in explained
    assert "the model's files changed since it was published" in explained
    assert "only the compressed bytes differ" in explain_difference(MANIFEST, MANIFEST)
