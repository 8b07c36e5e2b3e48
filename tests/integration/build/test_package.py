"""Packaging: layout, exclusions, refusals, determinism, atomic output, manifest, CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmetools.cli import main
from mmetools.core.process import find_tool
from support.build.package_support import build, make_demo_model, tar_names


@pytest.fixture
def one_megabyte_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB tmpfs mounted on tmp_path/dist (needs root with CAP_SYS_ADMIN: CI containers
    running as root have it; elsewhere the test is skipped with the reason)."""
    mountpoint = tmp_path / "dist"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MB tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_full_disk_is_a_clear_error_and_leaves_the_old_artifact(
    tmp_path: Path,
    one_megabyte_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real full disk, through `mmetools package`: a first artifact fits, the rebuild with
    2 MB of incompressible weights does not. The error names the folder and the cause, the old
    artifact and its sidecars stay as they were, and no temporary file is left."""
    model = make_demo_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["package", "models/demo", "--out", "dist", "--no-env"]
    assert main(argv) == 0
    capsys.readouterr()
    names = ["demo_3.tar.gz", "demo_3.tar.gz.manifest.json", "demo_3.tar.gz.sha256"]
    assert sorted(p.name for p in one_megabyte_disk.iterdir()) == names
    before = {name: (one_megabyte_disk / name).read_bytes() for name in names}

    weights = hashlib.shake_256(b"bigger weights").digest(2_000_000)
    (model.path / "demo_inferencer" / "1" / "model.onnx").write_bytes(weights)
    (model.path / "demo_inferencer" / "1" / "model.onnx.dvc").write_text(
        f"outs:\n- md5: {hashlib.md5(weights).hexdigest()}\n  size: {len(weights)}\n"
        "  hash: md5\n  path: model.onnx\n"
    )
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.splitlines()[-1] == (
        "error: dist: cannot write demo_3.tar.gz: no space left on the device; nothing was written"
    )
    assert sorted(p.name for p in one_megabyte_disk.iterdir()) == names  # no temporary file
    assert {name: (one_megabyte_disk / name).read_bytes() for name in names} == before


@pytest.mark.slow
@pytest.mark.integration
def test_absent_weights_are_pulled_through_dvc(tmp_path: Path) -> None:
    found = find_tool("dvc")  # a locked dependency of mmetools: never absent
    assert found is not None
    dvc = Path(found)
    model = make_demo_model(tmp_path)
    weights = model.path / "demo_inferencer" / "1" / "model.onnx"
    original = weights.read_bytes()
    shutil.rmtree(tmp_path / ".dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run_dvc(*args: str) -> None:
        subprocess.run([str(dvc), *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    run_dvc("init", "--no-scm", "-q")
    run_dvc("remote", "add", "-d", "local", str(tmp_path / "remote"))
    run_dvc("add", "-q", str(weights.relative_to(tmp_path)))
    run_dvc("push", "-q")
    weights.unlink()
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    built = build(model, tmp_path / "dist", fetch_weights=True)
    assert weights.read_bytes() == original
    with tarfile.open(built.path) as tar:
        extracted = tar.extractfile("demo_inferencer/1/model.onnx")
        assert extracted is not None and extracted.read() == original
    assert "demo_inferencer/1/.gitignore" not in tar_names(built.path)
