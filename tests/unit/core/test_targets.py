"""The serving target: the release table, unknown images, settings and `mmetools targets`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.cli import main
from mmetools.core.errors import ConfigError
from mmetools.core.settings import load_settings
from mmetools.core.targets import DEFAULT_IMAGE, RELEASES, release_of, resolve_target


def test_ngc_and_sagemaker_images_of_one_release_are_the_same_target() -> None:
    ngc = resolve_target("nvcr.io/nvidia/tritonserver:24.09-py3")
    sagemaker = resolve_target(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.09-py3"
    )
    assert (ngc.triton_version, ngc.python_version, ngc.interpreter_path, ngc.glibc) == (
        "2.50.0", "3.10", "/usr/bin/python3.10", "2.35"
    )  # fmt: skip
    assert sagemaker.as_json() | {"image": ""} == ngc.as_json() | {"image": ""}
    assert not ngc.numpy2_supported and ngc.glibcxx == "3.4.30"
    assert ngc.python_prefix == "/usr" and ngc.manylinux_platform == "x86_64-manylinux_2_35"


def test_the_ubuntu_24_04_generation() -> None:
    target = resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3")
    assert (target.triton_version, target.python_version, target.glibc, target.glibcxx) == (
        "2.53.0", "3.12", "2.39", "3.4.33"
    )  # fmt: skip
    assert target.numpy2_supported
    assert "python_backend PR 384" in target.source


def test_table_covers_23_05_to_the_newest_without_gaps() -> None:
    releases = [r.release for r in RELEASES]
    assert releases[0] == "23.05" and releases[-1] >= "25.01"
    assert len(set(releases)) == len(releases)
    assert all(r.python_version in ("3.10", "3.12") for r in RELEASES)
    assert not any(r.python_version == "3.11" for r in RELEASES)  # no release has 3.11
    assert release_of("nvcr.io/nvidia/tritonserver:24.10-py3").python_version == "3.10"  # type: ignore[union-attr]
    assert release_of("nvcr.io/nvidia/tritonserver:24.11-py3").python_version == "3.12"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "image",
    [
        "my.registry/triton:custom",
        "nvcr.io/nvidia/tritonserver:22.01-py3",
        "nvcr.io/nvidia/pytorch:24.12-py3",
    ],
)
def test_unknown_image_needs_every_value_and_says_so(image: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_target(image)
    assert f"image '{image}' is not a known NGC/SageMaker Triton release" in str(error.value)
    assert ("set triton_version, python_version, interpreter_path, glibc, glibcxx, "
            "numpy2_supported explicitly in [target]") in str(error.value)  # fmt: skip


def test_unknown_image_with_explicit_values(tmp_path: Path) -> None:
    (tmp_path / "mmetools.toml").write_text(
        '[target]\nimage = "my.registry/triton:custom"\ntriton_version = "2.55.0"\n'
        'python_version = "3.12"\ninterpreter_path = "/opt/py/bin/python3.12"\nglibc = "2.39"\n'
        'glibcxx = "3.4.33"\nnumpy2_supported = false\n'
    )
    target = load_settings(tmp_path, environ={}).target
    assert target.python_prefix == "/opt/py" and not target.numpy2_supported
    assert target.source == f"set explicitly in {tmp_path / 'mmetools.toml'} [target]"


def test_bad_explicit_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'python_version must look like "3.12", got "3"'):
        resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3", {"python_version": "3"})
    with pytest.raises(ConfigError, match="interpreter_path must be an absolute"):
        resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3", {"interpreter_path": "python3"})
    (tmp_path / "mmetools.toml").write_text('[target]\nnumpy2_supported = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[target\] numpy2_supported must be a bool"):
        load_settings(tmp_path, environ={})


def test_default_and_environment_override(tmp_path: Path) -> None:
    assert load_settings(tmp_path, environ={}).target.image == DEFAULT_IMAGE
    image = "nvcr.io/nvidia/tritonserver:24.09-py3"
    settings = load_settings(tmp_path, environ={"MMETOOLS_TARGET_IMAGE": image})
    assert settings.target.python_version == "3.10"


def test_cli_targets_lists_the_releases_and_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "23.05" in out and "24.12 *" in out and "/usr/bin/python3.10" in out
    assert f"target: {DEFAULT_IMAGE}: Triton 2.53.0, Python 3.12 at /usr/bin/python3.12" in out


def test_image_packages_per_release_from_build_py_numpy_lt2() -> None:
    # build.py pins "numpy<2" from r24.06: 1.26.4, the last 1.x; before it numpy is unpinned.
    assert (
        resolve_target("nvcr.io/nvidia/tritonserver:24.09-py3").image_version("numpy") == "1.26.4"
    )
    assert (
        resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3").image_version("NumPy") == "1.26.4"
    )
    assert resolve_target("nvcr.io/nvidia/tritonserver:24.05-py3").image_packages == ()
    assert "build.py" in resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3").source


def test_image_packages_override_in_target_section(tmp_path: Path) -> None:
    image = "nvcr.io/nvidia/tritonserver:24.12-py3"
    target = resolve_target(image, {"image_packages": "NumPy==2.1.0, Pillow==11.0.0"})
    assert target.image_packages == (("numpy", "2.1.0"), ("pillow", "11.0.0"))
    assert "overridden" in target.source and "image_packages" in target.source
    assert resolve_target(image, {"image_packages": "none"}).image_packages == ()
    (tmp_path / "mmetools.toml").write_text('[target]\nimage_packages = "numpy==1.25.0"\n')
    assert load_settings(tmp_path, environ={}).target.image_version("numpy") == "1.25.0"


def test_image_packages_that_are_not_pins_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"image_packages must list pins.*numpy>=1"):
        resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3", {"image_packages": "numpy>=1"})
