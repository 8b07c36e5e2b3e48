"""The pipeline (src/mmetools/pipeline.py, `mmetools build`): validation first, nothing of a
failed model in --out, evidence for exactly the bytes built, configs parsed once per run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.model import config as model_config
from mmetools.cli import main
from mmetools.core.errors import UsageError
from mmetools.core.memo import StatMemo
from mmetools.model.folder import model_folder
from mmetools.pipeline import STEP_NAMES, BuildOptions, build
from mmetools.core.settings import load_settings
from support.pipeline.pipeline_support import _copy_model


def test_validation_runs_first_and_a_wiring_mistake_starts_no_triton(tmp_path: Path) -> None:
    folder = _copy_model("intent_classifier", tmp_path)
    config = folder / "intent_classifier_pipeline" / "config.pbtxt"
    config.write_text(config.read_text().replace('model_name: "intent_classifier_inferencer"',
                                                 'model_name: "no_such_step"'))  # fmt: skip
    out = tmp_path / "out"
    report = build([model_folder(folder)], out, load_settings(tmp_path))
    statuses = {o.step: o.status for o in report.outcomes}
    assert statuses == {"validate": "failed", **{s: "skipped" for s in STEP_NAMES[1:]}}
    failed = report.outcomes[0]
    assert str(config) in failed.detail and "no_such_step" in failed.detail
    assert not report.passed and report.failed_models == ("intent_classifier",)
    assert list(out.iterdir()) == []  # nothing written, not even the private staging folder
    assert report.reports == ()  # no Triton test ran


def test_zero_models_is_a_usage_error_not_a_pass(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no model folders to build"):
        build([], tmp_path / "out", load_settings(tmp_path))
    assert main(["build", "--out", str(tmp_path / "out")]) == 2


def test_only_the_test_step_can_be_skipped(tmp_path: Path) -> None:
    folder = _copy_model("intent_classifier", tmp_path)
    out = tmp_path / "out"
    options = BuildOptions(skip=frozenset({"package"}))
    with pytest.raises(UsageError, match=r"cannot skip step\(s\) package: only test can be"):
        build([model_folder(folder)], out, load_settings(tmp_path), options)
    assert main(["build", str(folder), "--out", str(out), "--skip", "artifact"]) == 2
    assert not out.exists()  # refused before any step ran


def test_stat_memo_recomputes_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("one")
    memo: StatMemo[str] = StatMemo()
    assert memo.get(path, lambda p: p.read_text()) == "one"
    assert memo.get(path, lambda p: p.read_text()) == "one"
    assert memo.computed == 1
    path.write_text("two!")  # another size: a new state of the file
    assert memo.get(path, lambda p: p.read_text()) == "two!"
    assert memo.computed == 2


def test_load_config_hands_out_copies(tmp_path: Path) -> None:
    config = MODELS_DIR / "intent_classifier" / "intent_classifier_pipeline" / "config.pbtxt"
    first = model_config.load_config(config)
    first.name = "changed"
    assert model_config.load_config(config).name == "intent_classifier_pipeline"


def _target_env_archive() -> bytes:
    """A small env the package step's audit accepts for the default 24.12 target."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        site = "lib/python3.12/site-packages"
        for name, data in (
            ("bin/activate", b"# activate\n"),
            ("pyvenv.cfg", b"home = /usr/bin\n"),
            (f"{site}/numpy-1.26.4.dist-info/METADATA", b"Name: numpy\n"),
            (f"{site}/weights.bin", hashlib.shake_256(b"env").digest(200_000)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/python3.12"
        tar.addfile(link)
    return raw.getvalue()


def test_same_inputs_give_the_same_bytes_from_any_path_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tarball and manifest are pure functions of the model's files and its env archive:
    two checkouts at different paths, built under different HOMEs, give identical bytes."""
    from support.build.package_support import make_demo_model

    from mmetools.build.package import write_artifact

    env_archive = _target_env_archive()  # the same archive for both
    results = []
    for checkout in ("clone-a/deeper/path", "b"):
        root = tmp_path / checkout
        model = make_demo_model(root)
        (model.path / "demo_preprocessing" / "python_env.tar.gz").write_bytes(env_archive)
        monkeypatch.setenv("HOME", str(root / "home"))
        built = write_artifact(
            model,
            root / "dist",
            load_settings(root),
            env_hash="e" * 64,
            env_backend="venv",
        )
        results.append((built.path.read_bytes(), built.manifest_path.read_bytes()))
    assert results[0] == results[1]
    assert b"clone-a" not in results[0][1] and str(tmp_path).encode() not in results[0][1]


def test_a_failing_build_leaves_no_earlier_artifact_or_evidence_in_out(tmp_path: Path) -> None:
    """Issue 20 #7: `mmetools build --out dist` of a model that now fails used to keep the
    previous build's artifact and passing evidence in dist/, which publish then shipped."""
    folder = _copy_model("intent_classifier", tmp_path)
    version = (folder / "model_version.txt").read_text().strip()
    out = tmp_path / "dist"
    out.mkdir()
    name = f"intent_classifier_{version}"
    earlier = [out / f"{name}{suffix}" for suffix in
               (".tar.gz", ".tar.gz.sha256", ".tar.gz.manifest.json", ".evidence.json")]  # fmt: skip
    other = out / "other_1.tar.gz"  # another model's build stays
    for path in (*earlier, other):
        path.write_text("an earlier build\n")
    config = folder / "intent_classifier_pipeline" / "config.pbtxt"
    config.write_text(config.read_text().replace('model_name: "intent_classifier_inferencer"',
                                                 'model_name: "no_such_step"'))  # fmt: skip
    assert main(["build", str(folder), "--out", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["other_1.tar.gz"]
