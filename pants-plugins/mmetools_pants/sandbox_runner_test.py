from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmetools_pants.sandbox_runner import StagingError, WeightOut, read_outs, stage_weights


def test_read_outs_of_a_dvc3_pointer_ignores_nested_keys(tmp_path: Path) -> None:
    pointer = tmp_path / "model.onnx.dvc"
    pointer.write_text(
        "outs:\n"
        "- md5: 0123456789abcdef0123456789abcdef\n"
        "  size: 12\n"
        "  hash: md5\n"
        "  meta:\n"
        "    path: not-this\n"
        "  path: model.onnx\n"
    )
    assert read_outs(pointer) == [
        WeightOut(pointer, tmp_path / "model.onnx", "0123456789abcdef0123456789abcdef")
    ]


def test_read_outs_does_not_verify_legacy_or_directory_hashes(tmp_path: Path) -> None:
    pointer = tmp_path / "data.dvc"
    pointer.write_text(
        "md5: ffff\nouts:\n- md5: aaaa.dir\n  hash: md5\n  path: data\n- md5: bbbb\n  path: old.bin\n"
    )
    assert read_outs(pointer) == [
        WeightOut(pointer, tmp_path / "data", None),
        WeightOut(pointer, tmp_path / "old.bin", None),
    ]


def test_read_outs_names_a_pointer_without_path(tmp_path: Path) -> None:
    pointer = tmp_path / "w.dvc"
    pointer.write_text("outs:\n- md5: abc\n")
    with pytest.raises(StagingError, match=r"w\.dvc: an entry of `outs:` has no `path`"):
        read_outs(pointer)


def test_stage_weights_copies_verified_weights_without_fetching(tmp_path: Path) -> None:
    workspace, sandbox = tmp_path / "ws", tmp_path / "sb"
    for root in (workspace, sandbox):
        (root / "models/m/inf/1").mkdir(parents=True)
        md5 = hashlib.md5(b"w").hexdigest()
        (root / "models/m/inf/1/model.pt.dvc").write_text(
            f"outs:\n- md5: {md5}\n  hash: md5\n  path: model.pt\n"
        )
    (workspace / "models/m/inf/1/model.pt").write_bytes(b"w")
    # A fetch would fail: /bin/false is not mmetools. It must not be needed.
    outs = stage_weights(workspace, "models/m", "/bin/false", sandbox, sandbox / "out")
    assert [o.path for o in outs] == [Path("models/m/inf/1/model.pt")]
    assert (sandbox / "out/models/m/inf/1/model.pt").read_bytes() == b"w"


def test_stage_weights_reports_a_failed_fetch(tmp_path: Path) -> None:
    (tmp_path / "models/m").mkdir(parents=True)
    (tmp_path / "models/m/model.pt.dvc").write_text(
        "outs:\n- md5: abc\n  hash: md5\n  path: model.pt\n"
    )
    with pytest.raises(
        StagingError, match=r"models/m: `mmetools fetch models/m` failed \(exit 1\)"
    ):
        stage_weights(tmp_path, "models/m", "/bin/false", tmp_path, tmp_path / "out")
