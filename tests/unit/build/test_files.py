"""build/files.py names an artifact's files once; the Pants plugin's copy must agree with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from mmetools.build import files
from mmetools.build.files import ArtifactFiles, LocalFiles, StoredFiles
from mmetools.core.errors import UsageError

PLUGIN_NAMES = (
    Path(__file__).resolve().parents[3] / "pants-plugins/mmetools_pants/artifact_names.py"
)


def _plugin_names() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plugin_artifact_names", PLUGIN_NAMES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pants_plugin_names_the_files_as_mmetools_does() -> None:
    plugin = _plugin_names()
    for name in ("ARTIFACT_SUFFIX", "SHA256_SUFFIX", "MANIFEST_SUFFIX", "EVIDENCE_SUFFIX"):
        assert getattr(plugin, name) == getattr(files, name), name
    tarball = ArtifactFiles("demo", 3).tarball
    assert plugin.sha256_name(tarball) == files.sha256_name(tarball)
    assert plugin.manifest_name(tarball) == files.manifest_name(tarball)
    assert plugin.evidence_name(tarball) == files.evidence_name(tarball)
    assert plugin.evidence_name("dist/runs/r/" + tarball) == files.evidence_name(
        "dist/runs/r/" + tarball
    )


def test_one_file_set_locally_and_in_a_store(tmp_path: Path) -> None:
    artifact = ArtifactFiles("screen_detector", 3)
    assert (artifact.tarball, artifact.sha256, artifact.manifest, artifact.evidence) == (
        "screen_detector_3.tar.gz",
        "screen_detector_3.tar.gz.sha256",
        "screen_detector_3.tar.gz.manifest.json",
        "screen_detector_3.evidence.json",
    )
    local = artifact.local(tmp_path)
    assert local == LocalFiles(tmp_path / "screen_detector_3.tar.gz")
    assert [p.name for p in local.sidecars] == [
        artifact.manifest,
        artifact.sha256,
        artifact.evidence,
    ]
    keys = artifact.keys("mme/feature~x/")
    assert keys == StoredFiles("mme/feature~x/screen_detector_3.tar.gz")
    assert keys.sidecars == (
        "mme/feature~x/screen_detector_3.tar.gz.sha256",
        "mme/feature~x/screen_detector_3.tar.gz.manifest.json",
    )
    assert artifact.keys().tarball == artifact.tarball
    assert ArtifactFiles.parse(local.tarball) == artifact


def test_parse_refuses_other_names() -> None:
    with pytest.raises(UsageError, match="not an artifact name"):
        ArtifactFiles.parse(Path("dist/screen_detector_3.manifest.json"))
