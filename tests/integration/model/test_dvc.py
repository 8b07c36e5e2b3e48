"""mmetools.model.dvc: weights checked against their .dvc pointers, fetched with the real dvc.

The fetch tests work on a scratch copy of the repository's DVC setup (.dvc/config, the local
remote .dvc/example-remote) and example models, with the weight files left out, the way a fresh
clone looks. S3 runs against moto_server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import boto3
import pytest

from conftest import REPO_ROOT
from mmetools.core import process
from mmetools.cli import main
from mmetools.model.dvc import (
    WeightState,
    dvc_executable,
    fetch_weights,
    read_pointer,
    weight_status,
)
from mmetools.core.errors import DvcError
from support.model.dvc_support import ONNX, TORCHSCRIPT, model, no_subprocess, repo


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc(repo: Path, *args: str) -> str:
    return process.run([dvc_executable(), *args], cwd=repo).output


# --- fetching from the repository's local remote -------------------------------------------------


@pytest.mark.integration
def test_fetch_restores_weights_from_the_local_remote(repo: Path) -> None:
    for name, weight in (("screen_detector", ONNX), ("intent_classifier", TORCHSCRIPT)):
        (tracked,) = read_pointer(repo / f"{weight}.dvc")
        assert not (repo / weight).exists()
        fetched = fetch_weights(model(repo, name))
        assert fetched == [repo / weight]
        assert md5_of(repo / weight) == tracked.md5
        assert (repo / weight).stat().st_size == tracked.size
        assert [s.state for s in weight_status(model(repo, name))] == [WeightState.PRESENT]


@pytest.mark.integration
def test_fetch_pulls_only_that_models_weights(repo: Path) -> None:
    fetch_weights(model(repo, "intent_classifier"))
    assert (repo / TORCHSCRIPT).is_file()
    assert not (repo / ONNX).exists()


@pytest.mark.integration
def test_fetch_is_a_noop_without_dvc_when_weights_match(
    repo: Path, no_subprocess: list[Sequence[str]]
) -> None:
    shutil.copy2(REPO_ROOT / ONNX, repo / ONNX)  # the tracked bytes, put in place by hand
    assert fetch_weights(model(repo, "screen_detector")) == []
    assert no_subprocess == []


@pytest.mark.integration
def test_fetch_refuses_to_overwrite_a_modified_weight(
    repo: Path, no_subprocess: list[Sequence[str]]
) -> None:
    (repo / ONNX).write_bytes(b"retrained locally")
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "screen_detector"))
    assert str(raised.value) == (
        f"{ONNX}: differs from its DVC pointer {ONNX}.dvc (model screen_detector): keep it with "
        f"`dvc add {ONNX}` and `dvc push`, or replace it with the tracked version with "
        "`mmetools fetch --force`"
    )
    assert (repo / ONNX).read_bytes() == b"retrained locally"
    assert no_subprocess == []


@pytest.mark.integration
def test_fetch_force_replaces_a_modified_weight(repo: Path) -> None:
    (repo / ONNX).write_bytes(b"retrained locally")
    assert fetch_weights(model(repo, "screen_detector"), force=True) == [repo / ONNX]
    assert md5_of(repo / ONNX) == read_pointer(repo / f"{ONNX}.dvc")[0].md5


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_fetch_names_model_and_file_when_the_remote_lacks_the_object(repo: Path) -> None:
    (tracked,) = read_pointer(repo / f"{ONNX}.dvc")
    (
        repo / ".dvc" / "example-remote" / "files" / "md5" / tracked.md5[:2] / tracked.md5[2:]
    ).unlink()
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "screen_detector"))
    obj = f".dvc/example-remote/files/md5/{tracked.md5[:2]}/{tracked.md5[2:]}"
    # The remote is a folder of the repository: this checkout cannot tell "not pushed" from
    # "pushed but not committed", so the message gives both remedies in order.
    assert str(raised.value) == (
        f"{ONNX}: not in DVC remote 'examples' (md5 {tracked.md5}, model screen_detector): "
        "that remote is the folder .dvc/example-remote/ of this git repository, so its objects "
        "reach other checkouts only through git. Where the weights were made, run "
        f"`dvc push {ONNX}.dvc` if it did not run, then commit what it wrote: `git add {obj}` "
        "and commit"
    )
    assert not (repo / ONNX).exists()


@pytest.mark.integration
def test_fetch_unknown_remote_fails_with_dvc_message(repo: Path) -> None:
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "screen_detector"), remote="nowhere")
    message = str(raised.value)
    assert message.startswith(f"{ONNX}: missing after `dvc pull` from remote 'nowhere' ")
    assert "nowhere" in message.splitlines()[-1]  # dvc's own explanation follows


@pytest.mark.integration
def test_cli_fetch_then_up_to_date(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    assert main(["fetch", "models/screen_detector", "models/intent_classifier"]) == 0
    out = capsys.readouterr().out
    assert "screen_detector: fetched screen_detector_inferencer/1/model.onnx (" in out
    assert "intent_classifier: fetched intent_classifier_inferencer/1/model.pt (" in out
    assert main(["fetch", "models/screen_detector"]) == 0
    assert "screen_detector: up to date (1 tracked file(s), " in capsys.readouterr().out


@pytest.mark.integration
def test_cli_fetch_reports_a_failure_per_model(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    (repo / ONNX).write_bytes(b"retrained locally")
    assert main(["fetch", "models/screen_detector", "models/intent_classifier"]) == 1
    captured = capsys.readouterr()
    assert f"error: {ONNX}: differs from its DVC pointer" in captured.err
    assert "intent_classifier: fetched" in captured.out  # the other model still got its weights


# --- an S3 remote (moto_server on loopback) ------------------------------------------------------


@pytest.mark.integration
def test_fetch_from_an_s3_remote(repo: Path, aws_env: str) -> None:
    bucket = "dvc-example-weights"
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket=bucket)
    dvc(repo, "remote", "add", "store", f"s3://{bucket}/dvcstore")
    dvc(repo, "remote", "modify", "store", "endpointurl", aws_env)
    # fill the local cache from the repository's remote, then push it to S3
    dvc(repo, "pull")
    dvc(repo, "push", "--remote", "store")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    pointers = {w: read_pointer(repo / f"{w}.dvc")[0] for w in (ONNX, TORCHSCRIPT)}
    assert keys == sorted(f"dvcstore/files/md5/{p.md5[:2]}/{p.md5[2:]}" for p in pointers.values())
    # a fresh clone: no weights, no cache; pull from S3 only
    shutil.rmtree(repo / ".dvc" / "cache")
    for weight in pointers:
        (repo / weight).unlink()
    assert fetch_weights(model(repo, "screen_detector"), remote="store") == [repo / ONNX]
    assert md5_of(repo / ONNX) == pointers[ONNX].md5
    # an object missing from the bucket is reported against the S3 remote
    shutil.rmtree(repo / ".dvc" / "cache")
    key = f"dvcstore/files/md5/{pointers[TORCHSCRIPT].md5[:2]}/{pointers[TORCHSCRIPT].md5[2:]}"
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(DvcError) as raised:
        fetch_weights(model(repo, "intent_classifier"), remote="store")
    assert str(raised.value).startswith(
        f"{TORCHSCRIPT}: not in DVC remote 'store' (md5 {pointers[TORCHSCRIPT].md5}, "
        "model intent_classifier): push it with"
    )
