"""mmetools.testing.artifact_test: artifact names, unsafe tarballs (unit) and the MME emulation on tarballs of
the examples (integration)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.build.audit import audit_artifact
from mmetools.pipeline import package_model
from mmetools.cli import main
from mmetools.model.folder import ModelFolder
from mmetools.testing.artifact_test import run_artifacts
from mmetools.core.settings import Settings, TargetSettings, load_settings
from support.testing.artifact_test_support import _member, _tarball


@pytest.mark.integration
def test_cli_refuses_a_tarball_with_a_parent_member_before_extraction(
    tmp_path: Path, no_triton_leftovers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = _tarball(
        tmp_path / "screen_detector_1.tar.gz",
        _member("screen_detector_pipeline/config.pbtxt"),
        _member("../escaped.txt"),
    )
    assert main(["test", "--artifact", str(artifact)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{artifact}: refusing to unpack: unsafe member '../escaped.txt': path leaves the "
        "extraction folder (..)"
    ) in out
    assert not (tmp_path.parent / "escaped.txt").exists()


@pytest.fixture(scope="module")
def example_artifacts(
    tmp_path_factory: pytest.TempPathFactory, example_weights: None
) -> list[Path]:
    """The examples packaged by mmetools' own packager (packed env included), from copies so the
    working tree is not touched."""
    root = tmp_path_factory.mktemp("artifacts")
    settings = load_settings()
    artifacts = []
    for name in ("screen_detector", "intent_classifier"):
        copy = root / "models" / name
        shutil.copytree(
            MODELS_DIR / name,
            copy,
            ignore=shutil.ignore_patterns(".mypy_cache", "__pycache__"),
        )
        built = package_model(
            ModelFolder(copy), root / "dist", settings, validate=False, fetch_weights=False
        )
        artifacts.append(built.path)
    return artifacts


@pytest.mark.integration
def test_mme_emulation_passes_on_artifacts_of_both_examples(
    example_artifacts: list[Path], no_triton_leftovers: Path
) -> None:
    run = run_artifacts(example_artifacts, load_settings())
    assert [(r.name, r.source, r.error) for r in run.reports] == [
        ("screen_detector", str(example_artifacts[0]), None),
        ("intent_classifier", str(example_artifacts[1]), None),
    ]
    for report in run.reports:
        assert report.passed, [c.comparisons for c in report.results if not c.passed]
        assert len(report.results) == 6 and report.load_seconds is not None
    assert len(run.server_start_seconds) == 2  # different requirements: one server each


def _copy_example(name: str, root: Path) -> ModelFolder:
    copy = root / "models" / name
    shutil.copytree(
        MODELS_DIR / name,
        copy,
        ignore=shutil.ignore_patterns(
            ".mypy_cache", "__pycache__", "python_env.tar.gz", "*_env.tar.gz", ".*.json"
        ),
    )
    return ModelFolder(copy)


def _settings_for(image: str) -> Settings:
    return dataclasses.replace(load_settings(), target_settings=TargetSettings(image=image))


@pytest.mark.integration
def test_artifact_for_a_3_10_target_is_built_and_served_as_24_09_would(
    tmp_path: Path, example_weights: None, no_triton_leftovers: Path
) -> None:
    """Both examples for nvcr.io/nvidia/tritonserver:24.09-py3: screen_detector's one env holds
    pillow only (numpy 1.26.4 is the image's), points at /usr/bin/python3.10 and is served by
    the 3.10 stub with the image's /usr and numpy emulated; intent_classifier ships no env."""
    settings = _settings_for("nvcr.io/nvidia/tritonserver:24.09-py3")
    built = [
        package_model(_copy_example(name, tmp_path), tmp_path / "dist", settings, validate=False,
                      fetch_weights=False)  # fmt: skip
        for name in ("screen_detector", "intent_classifier")
    ]
    manifest = json.loads(built[0].manifest_path.read_text())
    assert manifest["target"]["python_version"] == manifest["env_python"] == "3.10"
    assert manifest["target"]["image_packages"] == {"numpy": "1.26.4"}
    with tarfile.open(built[0].path) as tar:
        env = tar.extractfile("screen_detector_env.tar.gz")
        assert env is not None
        assert not any(n.endswith("python_env.tar.gz") for n in tar.getnames())
        with tarfile.open(fileobj=io.BytesIO(env.read())) as inner:
            names = inner.getnames()
            assert inner.getmember("bin/python").linkname == "/usr/bin/python3.10"
            cfg = inner.extractfile("pyvenv.cfg").read()  # type: ignore[union-attr]
    assert b"include-system-site-packages = true" in cfg
    assert any(n.startswith("lib/python3.10/site-packages/PIL/") for n in names)
    assert not any(n.startswith("lib/python3.10/site-packages/numpy") for n in names)
    assert any(n.endswith(".cpython-310.pyc") for n in names)  # bytecode for the target
    assert json.loads(built[1].manifest_path.read_text())["env_hash"] is None
    with tarfile.open(built[1].path) as tar:
        assert not any("env.tar.gz" in n for n in tar.getnames())
    for artifact in built:
        run = run_artifacts([artifact.path], settings)
        (report,) = run.reports
        assert report.error is None and report.passed, report


@pytest.mark.integration
def test_a_step_needing_a_package_the_image_lacks_fails_without_its_env(
    tmp_path: Path, example_weights: None, no_triton_leftovers: Path
) -> None:
    """The broken case of the image emulation: screen_detector packaged with no env runs in the
    image's Python, which has numpy but not pillow: the step fails here as in the container."""
    model = _copy_example("screen_detector", tmp_path)
    for step in model.python_steps():
        step.config_path.write_text(step.config_path.read_text().split("parameters:")[0])
    settings = load_settings()
    built = package_model(model, tmp_path / "dist", settings, validate=False, with_env=False,
                          fetch_weights=False)  # fmt: skip
    run = run_artifacts([built.path], settings)
    (report,) = run.reports
    assert not report.passed
    assert "No module named 'PIL'" in (report.error or "") + "\n".join(report.log_lines)


@pytest.mark.integration
def test_a_lock_pinning_numpy_2_for_24_12_ships_and_serves_its_own_numpy(
    tmp_path: Path, example_weights: None, no_triton_leftovers: Path
) -> None:
    """No silent substitution: the image has numpy 1.26.4, the lock pins numpy 2, so the env
    packs numpy 2 (not layered on the image) and the steps import it."""
    from mmetools.build.env import lock_model

    model = _copy_example("intent_classifier", tmp_path)
    (model.path / "requirements.txt").write_text("numpy==2.1.3\n")
    for step in model.python_steps():
        step.config_path.write_text(
            step.config_path.read_text()
            + '\nparameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
            '"$$TRITON_MODEL_DIRECTORY/../intent_classifier_env.tar.gz" } }\n'
        )
    settings = load_settings()
    lock_model(model, settings.target)
    built = package_model(model, tmp_path / "dist", settings, validate=False, fetch_weights=False)
    with tarfile.open(built.path) as tar:
        env = tar.extractfile("intent_classifier_env.tar.gz")
        assert env is not None
        with tarfile.open(fileobj=io.BytesIO(env.read())) as inner:
            names = inner.getnames()
            cfg = inner.extractfile("pyvenv.cfg").read()  # type: ignore[union-attr]
    assert any(n.startswith("lib/python3.12/site-packages/numpy-2.1.3.dist-info/") for n in names)
    assert b"include-system-site-packages = false" in cfg
    # Served by the image's stub it would import numpy 2.1.3 first (the env comes first on
    # sys.path); not served here: the bundled CPU Triton's python backend (24.10-era) predates
    # numpy 2 support, the 24.12 image's does not. The audit accepts it for 24.12.
    report = audit_artifact(built.path, settings.target)
    assert report.ok and [env.numpy for env in report.envs] == ["2.1.3"]


@pytest.mark.integration
def test_without_the_target_emulation_a_target_env_fails_with_the_stub_error(
    example_artifacts: list[Path], no_triton_leftovers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broken case of the emulation: the target's stub and the same correct artifact, but
    /usr is this machine's (no Python 3.12 there, as in a wrong image): the step does not load."""
    import mmetools.testing.artifact_test as sagemaker_module
    import mmetools.testing.triton as triton_module

    version = load_settings().target.python_version
    if list(Path("/usr/lib").glob(f"*/libpython{version}.so.1.0")):
        # e.g. an Ubuntu 24.04 runner: without the overlay the stub still finds the image's
        # libpython, so dropping the overlay makes no wrong /usr here.
        pytest.skip(f"this machine's /usr already holds libpython{version}: no wrong /usr to use")
    monkeypatch.setattr(triton_module, "emulation_argv", lambda argv, python: list(argv))
    # Triton waits for a stub that cannot start until the load times out: do not wait 600 s (the
    # stub has failed, and logged why, within seconds).
    monkeypatch.setattr(sagemaker_module, "LOAD_TIMEOUT", 30.0)
    run = run_artifacts([example_artifacts[1]], load_settings())
    (report,) = run.reports
    assert not report.passed and report.error is not None
    assert report.error.startswith("SageMaker load of intent_classifier_1.tar.gz")
    # the stub's own error: the image's libpython is not where the container has it
    assert f"libpython{version}.so.1.0: cannot open shared object file" in report.error + "\n".join(
        report.log_lines
    )


@pytest.mark.integration
def test_mme_emulation_reports_a_tarball_without_an_ensemble(
    tmp_path: Path, no_triton_leftovers: Path
) -> None:
    artifact = _tarball(tmp_path / "screen_detector_1.tar.gz", _member("notes", tarfile.DIRTYPE))
    run = run_artifacts([artifact], load_settings())
    (report,) = run.reports
    # the audit gate names it before any server starts
    assert report.error is not None and report.error.startswith(
        "test --artifact: screen_detector_1.tar.gz fails the audit for target "
    )
    assert "root entries without a config.pbtxt (a wrapper folder or stray files?): notes" in (
        report.error
    )
    assert "SageMaker's frontend needs exactly one ensemble config at the root, found 0" in (
        report.error
    )
