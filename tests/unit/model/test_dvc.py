"""mmetools.model.dvc: weights checked against their .dvc pointers, fetched with the real dvc.

The fetch tests work on a scratch copy of the repository's DVC setup (.dvc/config, the local
remote .dvc/example-remote) and example models, with the weight files left out, the way a fresh
clone looks. S3 runs against moto_server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from dvc_data.hashfile.hash import file_md5 as dvc_data_file_md5

from conftest import MODELS_DIR, REPO_ROOT
from mmetools.cli import main
from mmetools.model.dvc import (
    LEGACY_MD5,
    MD5,
    Md5Memo,
    WeightState,
    fetch_weights,
    file_md5,
    read_pointer,
    tracked_files,
    weight_status,
)
from mmetools.core.errors import DvcError
from mmetools.model.folder import ModelFolder
from mmetools.core.settings import load_settings
from support.model.dvc_support import ONNX, TORCHSCRIPT, model, no_subprocess, repo

# --- pointers and md5 semantics -----------------------------------------------------------------


def test_read_pointer_of_the_example_weights() -> None:
    (tracked,) = read_pointer(REPO_ROOT / f"{ONNX}.dvc")
    assert tracked.path == REPO_ROOT / ONNX
    assert tracked.hash_name == MD5
    assert len(tracked.md5) == 32 and tracked.size is not None
    assert tracked.size < 1_000_000  # the examples' weights stay well under 1 MB


def test_tracked_files_are_the_inferencer_weights() -> None:
    for name, weight in (("screen_detector", ONNX), ("intent_classifier", TORCHSCRIPT)):
        files = tracked_files(ModelFolder(MODELS_DIR / name))
        assert [f.path for f in files] == [REPO_ROOT / weight]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"line one\r\nline two\r\n", "text with CRLF"),
        (b"\x00\x01binary\r\n" * 100, "binary with CRLF"),
        (b"text\r\n" * 300_000, "text larger than one 1 MiB chunk"),
        (bytes(range(256)) * 5000, "binary larger than one chunk"),
    ],
)
def test_file_md5_equals_dvc_data(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "file"
    path.write_bytes(content)
    for hash_name in (MD5, LEGACY_MD5):
        assert file_md5(path, hash_name) == dvc_data_file_md5(str(path), name=hash_name), why


def test_legacy_pointer_without_hash_field_uses_dos2unix_md5(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_bytes(b"a\r\nb\r\n")
    pointer = tmp_path / "labels.txt.dvc"
    lf_md5 = hashlib.md5(b"a\nb\n").hexdigest()
    pointer.write_text(f"outs:\n- md5: {lf_md5}\n  size: 6\n  path: labels.txt\n")
    (tracked,) = read_pointer(pointer)
    assert tracked.hash_name == LEGACY_MD5
    assert weight_status(ModelFolder(tmp_path))[0].state is WeightState.PRESENT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outs: []\n", "not a DVC pointer: expected a non-empty 'outs' list"),
        ("just text\n", "not a DVC pointer: expected a non-empty 'outs' list"),
        ("outs:\n- md5: 123\n  path: w.bin\n", "outs[0]: 'md5' must be 32 hex digits (got 123)"),
        ("outs:\n- md5: " + "a" * 32 + "\n", "outs[0]: missing 'path'"),
        (
            "outs:\n- md5: " + "a" * 32 + "\n  hash: sha256\n  path: w.bin\n",
            "outs[0]: unsupported hash 'sha256' (expected 'md5')",
        ),
        (
            "outs:\n- md5: " + "a" * 32 + "\n  path: s3://bucket/w.bin\n",
            "outs[0]: path 's3://bucket/w.bin' is outside the repository",
        ),
        ("outs: [\n", "cannot read DVC pointer"),
    ],
)
def test_bad_pointer_is_named(tmp_path: Path, text: str, message: str) -> None:
    pointer = tmp_path / "w.bin.dvc"
    pointer.write_text(text)
    with pytest.raises(DvcError) as raised:
        read_pointer(pointer)
    assert str(raised.value).startswith(f"{pointer}: {message}")


def test_weight_status_missing_then_modified(repo: Path) -> None:
    folder = model(repo, "screen_detector")
    assert [s.state for s in weight_status(folder)] == [WeightState.MISSING]
    weight = repo / ONNX
    shutil.copy2(REPO_ROOT / f"{ONNX}.dvc", repo / f"{ONNX}.dvc")  # unchanged pointer
    weight.write_bytes(b"not the tracked weights")
    assert [s.state for s in weight_status(folder)] == [WeightState.MODIFIED]


def test_md5_memo_skips_unchanged_files_and_notices_changes(tmp_path: Path) -> None:
    weight = tmp_path / "w.bin"
    weight.write_bytes(b"one")
    memo_path = tmp_path / "cache" / "memo.json"
    memo = Md5Memo(memo_path)
    assert memo.md5(weight, MD5) == hashlib.md5(b"one").hexdigest()
    memo.save()
    # a stored entry with the file's stat stamp is trusted without reading the file ...
    reloaded = Md5Memo(memo_path)
    ((key, entry),) = reloaded.entries.items()
    reloaded.entries[key] = [*entry[:3], "0" * 32]
    assert reloaded.md5(weight, MD5) == "0" * 32
    # ... and a changed file (size/mtime/inode differ) is hashed again
    weight.write_bytes(b"two!")
    assert reloaded.md5(weight, MD5) == hashlib.md5(b"two!").hexdigest()


def commit_all(repo: Path, *excluded: str) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    for path in excluded:
        subprocess.run([*git, "rm", "-q", "--cached", path], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "models"], cwd=repo, check=True)


def test_fetch_tells_pushed_but_not_committed_where_the_push_ran(repo: Path) -> None:
    shutil.copy2(REPO_ROOT / ONNX, repo / ONNX)  # weights in place: no dvc needed
    (tracked,) = read_pointer(repo / f"{ONNX}.dvc")
    obj = f".dvc/example-remote/files/md5/{tracked.md5[:2]}/{tracked.md5[2:]}"
    commit_all(repo, obj)  # the pointer is committed, the object dvc push wrote is not
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "screen_detector"))
    assert str(raised.value) == (
        f"{ONNX}: pushed but not committed (model screen_detector): `dvc push` wrote its "
        f"object to {obj}, which git does not track, while the pointer {ONNX}.dvc is "
        f"committed; other checkouts (CI) cannot fetch it: `git add {obj}` and commit"
    )
    # Committing the object is the fix: the same fetch passes.
    subprocess.run(["git", "add", obj], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "obj"],
        cwd=repo,
        check=True,
    )
    assert fetch_weights(model(repo, "screen_detector")) == []


def test_fetch_tells_not_pushed_where_the_weights_were_made(repo: Path) -> None:
    shutil.copy2(REPO_ROOT / ONNX, repo / ONNX)
    (tracked,) = read_pointer(repo / f"{ONNX}.dvc")
    obj = f".dvc/example-remote/files/md5/{tracked.md5[:2]}/{tracked.md5[2:]}"
    (repo / obj).unlink()  # never pushed
    commit_all(repo)
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "screen_detector"))
    assert str(raised.value) == (
        f"{ONNX}: not pushed (model screen_detector): its pointer {ONNX}.dvc is committed but "
        f"the DVC remote folder has no object for it ({obj}): run `dvc push {ONNX}.dvc`, then "
        f"`git add {obj}` and commit"
    )


def test_fetch_of_uncommitted_work_does_not_ask_for_commits(repo: Path) -> None:
    shutil.copy2(REPO_ROOT / ONNX, repo / ONNX)
    (tracked,) = read_pointer(repo / f"{ONNX}.dvc")
    (repo / f".dvc/example-remote/files/md5/{tracked.md5[:2]}/{tracked.md5[2:]}").unlink()
    commit_all(repo)
    (repo / f"{ONNX}.dvc").write_text(
        (repo / f"{ONNX}.dvc").read_text() + "# re-added, not committed yet\n"
    )
    assert fetch_weights(model(repo, "screen_detector")) == []


def test_fetch_of_a_model_without_pointers_does_nothing(
    tmp_path: Path, no_subprocess: list[Sequence[str]]
) -> None:
    assert fetch_weights(ModelFolder(tmp_path)) == []


def test_cli_fetch_rejects_a_folder_that_is_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())  # main() lets rich wrap long lines
    assert err == (
        f"error: {tmp_path}: not a model folder "
        "(expected model_version.txt and the model's step folders)"
    )


def test_fetch_with_settings_remembers_md5s(repo: Path, tmp_path: Path) -> None:
    shutil.copy2(REPO_ROOT / ONNX, repo / ONNX)
    settings = load_settings(repo, environ={"MMETOOLS_CACHE_DIR": str(tmp_path / "cache")})
    assert fetch_weights(model(repo, "screen_detector"), settings) == []
    assert (tmp_path / "cache" / "dvc-md5-memo.json").is_file()
