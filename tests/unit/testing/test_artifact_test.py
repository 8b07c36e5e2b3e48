"""mmetools.testing.artifact_test: artifact names, unsafe tarballs (unit) and the MME emulation on tarballs of
the examples (integration)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from mmetools.cli import main
from mmetools.core.errors import ArtifactError, UsageError
from mmetools.model.folder import ModelRef
from mmetools.model.folder import parse_artifact_name
from mmetools.testing.artifact_test import check_artifact, unpack_artifact
from support.testing.artifact_test_support import _member, _tarball


def test_parse_artifact_name() -> None:
    assert parse_artifact_name(Path("dist/screen_detector_3.tar.gz")) == ModelRef(
        "screen_detector", 3
    )
    assert parse_artifact_name(Path("model_v2_12.tar.gz")) == ModelRef("model_v2", 12)


@pytest.mark.parametrize(
    "name",
    [
        "screen_detector.tar.gz",
        "screen_detector_0.tar.gz",
        "screen_detector_01.tar.gz",
        "Screen_detector_1.tar.gz",
        "screen-detector-x_1.tar.gz",  # one '-' at most: <family>-<tenant>
        "screen_detector_1.tgz",
        "_1.tar.gz",
        "screen_detector_1.tar.gz.sha256",
    ],
)
def test_parse_artifact_name_refuses_other_names(name: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_artifact_name(Path("dist") / name)
    assert str(error.value) == (
        f"dist/{name}: not an artifact name: expected <name>_<version>.tar.gz with a lowercase "
        "name (letters, digits, _) and a positive integer version, e.g. screen_detector_3.tar.gz"
    )


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_member("../evil.py"), "'../evil.py': path leaves the extraction folder (..)"),
        (_member("step/../../evil.py"), "'step/../../evil.py': path leaves the extraction folder"),
        (_member("/etc/evil"), "'/etc/evil': absolute path"),
        (_member("step/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to /etc/passwd"),
        (_member("step/hard", tarfile.LNKTYPE, "step/config.pbtxt"), "hard link to step/config"),
        (_member("step/dev", tarfile.CHRTYPE), "'step/dev': device or pipe"),
        (_member("step/fifo", tarfile.FIFOTYPE), "'step/fifo': device or pipe"),
    ],
)
def test_unsafe_tarballs_are_refused_before_extraction(
    tmp_path: Path, member: tarfile.TarInfo, problem: str
) -> None:
    artifact = _tarball(tmp_path / "demo_1.tar.gz", _member("step/config.pbtxt"), member)
    destination = tmp_path / "work" / "model"
    with pytest.raises(ArtifactError) as error:
        unpack_artifact(artifact, destination)
    assert str(error.value).startswith(f"{artifact}: refusing to unpack: unsafe member ")
    assert problem in str(error.value)
    assert not (tmp_path / "work").exists()


def test_every_unsafe_member_is_named(tmp_path: Path) -> None:
    artifact = _tarball(tmp_path / "demo_1.tar.gz", _member("../a"), _member("ok/b"), _member("/c"))
    with pytest.raises(ArtifactError) as error:
        check_artifact(artifact)
    assert str(error.value) == (
        f"{artifact}: refusing to unpack: unsafe members '../a': path leaves the extraction "
        "folder (..); '/c': absolute path"
    )


def test_a_file_that_is_no_tarball_is_refused(tmp_path: Path) -> None:
    artifact = tmp_path / "demo_1.tar.gz"
    artifact.write_bytes(b"not gzip at all")
    with pytest.raises(ArtifactError, match=r"demo_1.tar.gz: not a readable \.tar\.gz"):
        check_artifact(artifact)


def test_safe_tarball_unpacks(tmp_path: Path) -> None:
    artifact = _tarball(
        tmp_path / "demo_1.tar.gz", _member("step", tarfile.DIRTYPE), _member("step/f")
    )
    unpack_artifact(artifact, tmp_path / "out" / "model")
    assert (tmp_path / "out" / "model" / "step" / "f").read_bytes() == b"xxx"


def test_cli_refuses_a_bad_artifact_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--artifact", "dist/screen-detector.tar.gz"]) == 2
    assert "not an artifact name" in capsys.readouterr().err


def test_unpacking_beyond_the_free_space_is_refused_disk_usage_mocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip bomb must not fill the disk: the index's total size is checked against the free
    space before extraction (free space mocked: a full disk cannot be made here)."""
    artifact = _tarball(
        tmp_path / "demo_1.tar.gz", _member("step", tarfile.DIRTYPE), _member("step/f")
    )
    usage = shutil.disk_usage(tmp_path)
    # 3 bytes are needed, 2 are free.
    monkeypatch.setattr(
        "mmetools.testing.artifact_test.shutil.disk_usage", lambda _: usage._replace(free=2)
    )
    with pytest.raises(ArtifactError) as error:
        unpack_artifact(artifact, tmp_path / "out" / "model")
    assert str(error.value) == (
        f"{artifact}: refusing to unpack: it expands to 0 MiB, more than the 0 MiB free at "
        f"{tmp_path}"
    )
    assert not (tmp_path / "out").exists()
