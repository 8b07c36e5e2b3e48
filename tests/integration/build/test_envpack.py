"""Packed Python envs: backends' commands, the cache, the steps' copies and EXECUTION_ENV_PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from mmetools.build.env import pack_env, select_backend
from mmetools.core.errors import EnvPackError
from mmetools.core.interpreters import find_python
from mmetools.build.env.bytecode import is_hash_based_pyc
from mmetools.core.targets import resolve_target
from mmetools.testing.triton import TargetPython, emulation_argv
from support.build.envpack_support import IMAGE_2409, IMAGE_2412, make_model, settings_for

# --------------------------------------------------------------------------------------------
# Real builds


def _run_in_target(archive: Path, target: Path, code: str, image: str = IMAGE_2412) -> str:
    """Unpack the env and run its Python the way the image would: bin/activate, then `python`,
    with the image's prefix emulated by a local interpreter of the same minor version."""
    target.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    serving = resolve_target(image)
    local = find_python(serving.python_version)
    script = f'source "{target}/bin/activate" && python -c "{code}"'
    argv = emulation_argv(
        ["bash", "-c", script],
        TargetPython(local.prefix, serving.python_prefix, serving.python_version),
    )
    result = subprocess.run(argv, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()  # fmt: skip


def _build(root: Path, image: str = IMAGE_2412, requirements: str = "numpy==1.26.4\n") -> Path:
    model = make_model(root, requirements=requirements)
    packed = pack_env(model, settings_for(root, image), backend=select_backend(settings_for(root)))
    assert packed is not None and packed.backend == "venv"
    return packed.path


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(("image", "version"), [(IMAGE_2412, "3.12"), (IMAGE_2409, "3.10")])
def test_real_env_runs_with_the_target_python(tmp_path: Path, image: str, version: str) -> None:
    archive = _build(tmp_path, image)
    tag = f".cpython-{version.replace('.', '')}.pyc"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert not any(m.islnk() for m in tar)
        assert tar.getmember("bin/python").linkname == f"/usr/bin/python{version}"
        pycs = [m for m in tar if m.name.endswith(".pyc")]
        # hash-based bytecode for the target's Python only (PEP 552), none of the slimmed files
        assert pycs and all(m.name.endswith(tag) for m in pycs)
        assert all(is_hash_based_pyc(tar.extractfile(m).read()) for m in pycs[:50])  # type: ignore[union-attr]
    site = f"lib/python{version}/site-packages"
    assert (
        f"{site}/numpy/__init__.py" in names and f"{site}/numpy/__pycache__/__init__{tag}" in names
    )
    assert not any("/tests/" in n or n.endswith((".pyi", ".pxd")) for n in names)
    assert not any("/include/" in n and n.endswith(".h") for n in names)
    # numpy imports from the slimmed env, from its bytecode (numpy.__cached__ is the packed .pyc)
    out = _run_in_target(
        archive, tmp_path / "unpacked", "import numpy, sys; numpy.zeros(3).sum(); "
        "print(numpy.__version__, sys.prefix, sys.base_prefix, sys.version_info[:2])", image,
    )  # fmt: skip
    assert out == f"1.26.4 {tmp_path / 'unpacked'} /usr ({version.replace('.', ', ')})"


@pytest.mark.slow
@pytest.mark.integration
def test_env_bytes_identical_from_other_folders_home_and_path_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds with nothing in common but the inputs: folder, cache, HOME and PATH order."""
    path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("HOME", str(tmp_path / "home-a"))
    first = _build(tmp_path / "clone-a")
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere" / "home-b"))
    monkeypatch.setenv("PATH", os.pathsep.join(reversed(path)))
    find_python.cache_clear()
    second = _build(tmp_path / "elsewhere" / "clone-b")
    find_python.cache_clear()
    assert first != second
    assert first.read_bytes() == second.read_bytes()
    for text in (first.read_bytes(),):
        assert str(tmp_path).encode() not in text


@pytest.mark.slow
@pytest.mark.integration
def test_real_unresolvable_requirements_fail_with_the_tool_output(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    model = make_model(tmp_path, requirements="mmetools-no-such-package-anywhere==0.0.1\n")
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings, backend=select_backend(settings))
    message = str(error.value)
    assert message.startswith(f"model 'demo': building the venv env from {model.requirements_file}")
    assert "mmetools-no-such-package-anywhere" in message


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("conda") is None and shutil.which("mamba") is None, reason="conda not on PATH"
)
def test_real_conda_env_imports_numpy(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings = replace(settings, env=replace(settings.env, backend="conda"))
    model = make_model(tmp_path, requirements="numpy\n")
    packed = pack_env(model, settings)
    assert packed is not None and packed.backend == "conda"
