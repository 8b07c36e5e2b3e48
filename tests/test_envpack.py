"""Packed Python envs: backends' commands, the cache, the steps' copies and EXECUTION_ENV_PATH."""

from __future__ import annotations

import dataclasses

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mmetools import process
from mmetools.cli import main
from mmetools.envpack import (
    _PROBE_VERSION,
    CondaPackBackend,
    EnvBackend,
    VenvPackBackend,
    ensure_execution_env_path,
    env_hash,
    normalized_requirements,
    pack_env,
    select_backend,
)
from mmetools.errors import EnvPackError
from mmetools.model_config import load_config
from mmetools.model_folder import ModelFolder
from mmetools.process import CompletedCommand
from mmetools.settings import CacheSettings, EnvSettings, Settings, load_settings

PRE_CONFIG = """\
# Decodes text.   (this comment and the odd spacing must survive)
name:   "demo_preprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "IDS" data_type: TYPE_INT64 dims: [ 4 ] } ]"""  # no trailing newline on purpose
POST_CONFIG = """\
name: "demo_postprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "IDS" data_type: TYPE_INT64 dims: [ 4 ] } ]
output [ { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
PIPELINE_CONFIG = """\
name: "demo_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "demo_preprocessing" model_version: -1
    input_map { key: "TEXT" value: "TEXT" } output_map { key: "IDS" value: "ids" } },
  { model_name: "demo_postprocessing" model_version: -1
    input_map { key: "IDS" value: "ids" } output_map { key: "LABEL" value: "LABEL" } }
] }
"""
PARAMETER_BLOCK = (
    "parameters: {\n"
    '  key: "EXECUTION_ENV_PATH"\n'
    '  value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" }\n'
    "}\n"
)


def make_model(root: Path, requirements: str = "numpy==1.26.4\n") -> ModelFolder:
    model = root / "models" / "demo"
    files = {
        "model_version.txt": "1\n",
        "requirements.txt": requirements,
        "demo_preprocessing/config.pbtxt": PRE_CONFIG,
        "demo_preprocessing/1/model.py": "",
        "demo_postprocessing/config.pbtxt": POST_CONFIG,
        "demo_postprocessing/1/model.py": "",
        "demo_pipeline/config.pbtxt": PIPELINE_CONFIG,
    }
    for name, text in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text(text, encoding="utf-8")
    return ModelFolder(model)


def settings_for(root: Path, python: str = "3.11", stub: str = "3.11") -> Settings:
    settings = load_settings(root, environ={})
    return replace(
        settings,
        env=EnvSettings(backend="venv", python_version=python, triton_stub_python=stub),
        cache=CacheSettings(dir=str(root / "cache")),
    )


def small_env_archive(path: Path, *, hard_link: bool = False) -> None:
    with tarfile.open(path, "w:gz") as tar:
        data = b"# activate\n"
        info = tarfile.TarInfo("bin/activate")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if hard_link:
            link = tarfile.TarInfo("bin/activate2")
            link.type = tarfile.LNKTYPE
            link.linkname = "bin/activate"
            tar.addfile(link)


class FakeTools:
    """Records every command; answers the version probe; writes the archive packers produce."""

    def __init__(self, python_version: str = "3.11", fail_with: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.python_version = python_version
        self.fail_with = fail_with
        self.hard_link = False

    def __call__(
        self, argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
    ) -> CompletedCommand:
        argv = list(argv)
        self.calls.append(argv)
        if argv[-2:] == ["-c", _PROBE_VERSION]:
            return CompletedCommand(tuple(argv), 0, f"{self.python_version}\n")
        if self.fail_with and "install" in argv:
            return CompletedCommand(tuple(argv), 1, f"Collecting things\n{self.fail_with}\n")
        if "--output" in argv:
            small_env_archive(Path(argv[argv.index("--output") + 1]), hard_link=self.hard_link)
        return CompletedCommand(tuple(argv), 0, "")


@pytest.fixture
def tools() -> Iterator[FakeTools]:
    fake = FakeTools()
    previous = process.set_runner(fake)
    try:
        yield fake
    finally:
        process.set_runner(previous)


def _workdir_of(calls: list[list[str]]) -> str:
    prefix = next(arg for call in calls for arg in call if arg.endswith("/env"))
    return prefix.removesuffix("/env")


def _normalized(calls: list[list[str]]) -> list[list[str]]:
    workdir = _workdir_of(calls)
    return [[arg.replace(workdir, "<work>") for arg in call] for call in calls]


# --------------------------------------------------------------------------------------------
# Backends: the commands they run


def test_conda_backend_commands_mocked_conda(tmp_path: Path, tools: FakeTools) -> None:
    tools.python_version = "3.12"
    model = make_model(tmp_path)
    settings = settings_for(tmp_path, python="3.12", stub="3.12")
    packed = pack_env(model, settings, backend=CondaPackBackend("/opt/conda/bin/mamba"))
    assert packed is not None and packed.backend == "conda" and not packed.cached
    conda_pack = str(Path(sys.executable).parent / "conda-pack")
    requirements = str(model.requirements_file)
    assert _normalized(tools.calls) == [
        ["/opt/conda/bin/mamba", "create", "--yes", "--quiet", "--copy", "--prefix",
         "<work>/env", "python=3.12", "pip"],
        ["<work>/env/bin/python", "-c", _PROBE_VERSION],
        ["<work>/env/bin/python", "-m", "pip", "install", "--no-input",
         "--disable-pip-version-check", "-r", requirements],
        [conda_pack, "--prefix", "<work>/env", "--output", "<work>/entry/python_env.tar.gz",
         "--ignore-missing-files", "--quiet"],
    ]  # fmt: skip
    # the build happened beside the cache, and its temp folder is gone
    assert Path(_workdir_of(tools.calls)).parent == settings.cache_dir / "envs"
    assert not Path(_workdir_of(tools.calls)).exists()


def test_venv_backend_commands_with_uv(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    backend = VenvPackBackend(python="/usr/bin/python3.11", uv="/usr/local/bin/uv")
    pack_env(model, settings_for(tmp_path), backend=backend)
    assert _normalized(tools.calls) == [
        ["/usr/bin/python3.11", "-m", "venv", "--without-pip", "<work>/env"],
        ["<work>/env/bin/python", "-c", _PROBE_VERSION],
        ["/usr/local/bin/uv", "pip", "install", "--quiet", "--python", "<work>/env/bin/python",
         "-r", str(model.requirements_file)],
        [sys.executable, "-m", "venv_pack", "--prefix", "<work>/env", "--output",
         "<work>/entry/python_env.tar.gz", "--quiet"],
    ]  # fmt: skip


def test_venv_backend_without_uv_uses_pip_and_without_python_uses_uv(
    tmp_path: Path, tools: FakeTools
) -> None:
    model = make_model(tmp_path)
    pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3.11", None))
    calls = _normalized(tools.calls)
    assert calls[0] == ["/usr/bin/python3.11", "-m", "venv", "<work>/env"]
    assert calls[2][:4] == ["<work>/env/bin/python", "-m", "pip", "install"]
    tools.calls.clear()
    other = make_model(tmp_path / "other", requirements="numpy==1.26.3\n")
    pack_env(other, settings_for(tmp_path), backend=VenvPackBackend(None, "/usr/local/bin/uv"))
    assert _normalized(tools.calls)[0] == [
        "/usr/local/bin/uv", "venv", "--quiet", "--python", "3.11", "<work>/env"
    ]  # fmt: skip


def test_env_with_the_wrong_python_is_refused(tmp_path: Path, tools: FakeTools) -> None:
    tools.python_version = "3.10"
    model = make_model(tmp_path)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3", None))
    workdir = _workdir_of(tools.calls)
    assert str(error.value) == (
        f"the venv backend created an env with Python 3.10 at {workdir}/env/bin/python, but "
        "Python 3.11 was asked for (settings env.python_version)"
    )
    assert not (tmp_path / "cache" / "envs").exists() or not any(
        p.name != Path(workdir).name for p in (tmp_path / "cache" / "envs").iterdir()
    )


def _fake_executable(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_backend_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path)
    auto = replace(settings, env=replace(settings.env, backend="auto"))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    # uv is a dependency of mmetools: the one beside the interpreter wins over PATH.
    uv_beside = str(Path(sys.executable).parent / "uv")
    assert select_backend(auto) == VenvPackBackend(python=None, uv=uv_beside)
    with pytest.raises(EnvPackError) as error:
        select_backend(replace(settings, env=replace(settings.env, backend="conda")))
    assert str(error.value) == (
        'settings env.backend is "conda" but neither conda nor mamba is on PATH; install one '
        'or set env.backend = "venv" (MMETOOLS_ENV_BACKEND=venv)'
    )
    with pytest.raises(EnvPackError, match='must be "auto", "conda" or "venv", got "pip"'):
        select_backend(replace(settings, env=replace(settings.env, backend="pip")))
    conda = _fake_executable(tmp_path / "bin", "conda")
    python = _fake_executable(tmp_path / "bin", "python3.11")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert select_backend(auto) == CondaPackBackend(str(conda))
    assert select_backend(settings) == VenvPackBackend(python=str(python), uv=uv_beside)
    mamba = _fake_executable(tmp_path / "bin", "mamba")
    assert select_backend(auto) == CondaPackBackend(str(mamba))


# --------------------------------------------------------------------------------------------
# Python version, requirements


def test_python_mismatch_with_the_triton_stub_is_refused(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path, python="3.11", stub="3.12"))
    assert str(error.value) == (
        "settings env.python_version is 3.11 but env.triton_stub_python is 3.12: the packed "
        "env's Python must equal the Python of Triton's python-backend stub (3.12 for Triton "
        ">= 24.11, 3.10 before). Set both in mmetools.toml [env]."
    )
    assert tools.calls == []


def test_missing_requirements_file_is_named(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    model.requirements_file.unlink()
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path))
    assert str(error.value) == (
        f"{model.requirements_file}: missing; model 'demo' has Python steps and their env is "
        "built from this file (list at least numpy, which Triton's python backend imports)"
    )


def test_included_requirement_files_are_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path, requirements="numpy\n# base\n-r base.txt\n")
    with pytest.raises(EnvPackError) as error:
        normalized_requirements(model.requirements_file, "demo")
    assert str(error.value) == (
        f"{model.requirements_file}:3: '-r base.txt' is not supported in a model's requirements: "
        "list the packages themselves (included files and editable installs cannot be cached "
        "or packed)"
    )


def test_hash_ignores_comments_and_order_but_not_versions(tmp_path: Path) -> None:
    backend: EnvBackend = VenvPackBackend("/usr/bin/python3.11", None)

    def digest(text: str, python: str = "3.11", chosen: EnvBackend = backend) -> str:
        path = tmp_path / "requirements.txt"
        path.write_text(text)
        return env_hash(normalized_requirements(path, "demo"), python, chosen)

    base = digest("numpy==1.26.4\npillow==10.4.0\n")
    assert digest("# pinned\npillow==10.4.0   # images\n\n  numpy==1.26.4\n") == base
    assert digest("numpy==1.26.3\npillow==10.4.0\n") != base
    assert digest("numpy==1.26.4\npillow==10.4.0\n", python="3.12") != base
    assert digest("numpy==1.26.4\npillow==10.4.0\n", chosen=CondaPackBackend("conda")) != base


def test_failing_install_names_the_model_and_file_with_the_tool_output(
    tmp_path: Path, tools: FakeTools
) -> None:
    tools.fail_with = "ERROR: No matching distribution found for nosuchpackage==9"
    model = make_model(tmp_path, requirements="nosuchpackage==9\n")
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3", None))
    assert str(error.value) == (
        f"model 'demo': building the venv env from {model.requirements_file} failed: "
        f"installing {model.requirements_file} failed with exit code 1:\n"
        "Collecting things\nERROR: No matching distribution found for nosuchpackage==9"
    )
    assert list((tmp_path / "cache" / "envs").iterdir()) == []  # no half-built entry


def test_archive_with_hard_links_is_refused(tmp_path: Path, tools: FakeTools) -> None:
    tools.hard_link = True
    model = make_model(tmp_path)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3", None))
    assert str(error.value) == (
        "model 'demo': the packed env holds hard links, which Triton cannot unpack: bin/activate2"
    )
    assert list((tmp_path / "cache" / "envs").iterdir()) == []


# --------------------------------------------------------------------------------------------
# Cache and step copies


def test_cache_hit_skips_the_build(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    backend = VenvPackBackend("/usr/bin/python3.11", "/usr/local/bin/uv")
    first = pack_env(model, settings, backend=backend)
    assert first is not None and not first.cached and len(tools.calls) == 4
    copies = [model.path / step / "python_env.tar.gz" for step in
              ("demo_postprocessing", "demo_preprocessing")]  # fmt: skip
    assert first.steps == tuple(copies)
    assert all(copy.read_bytes() == first.path.read_bytes() for copy in copies)
    assert all(os.stat(copy).st_nlink == 1 for copy in copies)  # copies, not hard links
    stamps = [copy.stat().st_mtime_ns for copy in copies]

    tools.calls.clear()
    started = time.perf_counter()
    second = pack_env(model, settings, backend=backend)
    elapsed = time.perf_counter() - started
    assert second is not None and second.cached and second.env_hash == first.env_hash
    assert tools.calls == []  # nothing built, nothing run
    assert [copy.stat().st_mtime_ns for copy in copies] == stamps  # copies left alone
    print(f"cache hit took {elapsed * 1000:.1f} ms")

    copies[0].unlink()  # a lost copy comes back from the cache, still without a build
    third = pack_env(model, settings, backend=backend)
    assert third is not None and third.cached and tools.calls == []
    assert copies[0].read_bytes() == first.path.read_bytes()
    record = json.loads((copies[0].parent / ".python_env.json").read_text())
    assert record["env_hash"] == first.env_hash and record["size"] == copies[0].stat().st_size


def test_changed_requirements_rebuild(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    backend = VenvPackBackend("/usr/bin/python3.11", None)
    first = pack_env(model, settings, backend=backend)
    model.requirements_file.write_text("# same packages, new comment\nnumpy==1.26.4\n")
    tools.calls.clear()
    assert first is not None
    assert pack_env(model, settings, backend=backend) == dataclasses.replace(first, cached=True)
    assert tools.calls == []
    model.requirements_file.write_text("numpy==1.26.4\npillow\n")
    changed = pack_env(model, settings, backend=backend)
    assert changed is not None and not changed.cached and changed.env_hash != first.env_hash
    assert tools.calls


def test_model_without_python_steps_needs_no_env(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    for step in ("demo_preprocessing", "demo_postprocessing"):
        config = model.path / step / "config.pbtxt"
        config.write_text(config.read_text().replace('backend: "python"', 'backend: "identity"'))
    assert pack_env(model, settings_for(tmp_path)) is None
    assert tools.calls == []


# --------------------------------------------------------------------------------------------
# EXECUTION_ENV_PATH


def test_execution_env_path_is_added_keeping_the_text(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3", None))
    config = model.path / "demo_preprocessing" / "config.pbtxt"
    assert config.read_text() == PRE_CONFIG + "\n\n" + PARAMETER_BLOCK
    parsed = load_config(config)
    assert parsed.parameters["EXECUTION_ENV_PATH"].string_value == (
        "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz"
    )
    assert parsed.name == "demo_preprocessing" and len(parsed.input) == 1
    post = model.path / "demo_postprocessing" / "config.pbtxt"
    assert post.read_text() == POST_CONFIG + "\n" + PARAMETER_BLOCK
    # a second run leaves the files byte for byte
    assert ensure_execution_env_path(config) is False
    assert config.read_text() == PRE_CONFIG + "\n\n" + PARAMETER_BLOCK


def test_existing_execution_env_path_is_preserved(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    text = (
        'name: "x"\nbackend: "python"\n'
        "parameters [\n  {\n    key: 'EXECUTION_ENV_PATH' # ours\n"
        "    value { string_value: '$$TRITON_MODEL_DIRECTORY//python_env.tar.gz' }\n  }\n]\n"
    )
    config.write_text(text)
    assert ensure_execution_env_path(config) is False
    assert config.read_text() == text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "$$TRITON_MODEL_DIRECTORY/../shared/python_env.tar.gz",
            "leaves the step folder through '..'; mmetools places the env at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "python_env.tar.gz",
            "must start with $$TRITON_MODEL_DIRECTORY/ (Triton does not resolve a relative path "
            "against the step folder), e.g. $$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "$$TRITON_MODEL_DIRECTORY/env.tar.gz",
            "must name the step's packed env: mmetools places it at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
    ],
)
def test_wrong_execution_env_path_is_refused_before_building(
    tmp_path: Path, tools: FakeTools, value: str, problem: str
) -> None:
    model = make_model(tmp_path)
    config = model.path / "demo_postprocessing" / "config.pbtxt"
    original = POST_CONFIG + (
        f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{value}" }} }}\n'
    )
    config.write_text(original)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend("/usr/bin/python3", None))
    assert str(error.value) == f"{config}: parameter EXECUTION_ENV_PATH '{value}' {problem}"
    assert tools.calls == [] and config.read_text() == original


def test_step_copies_are_git_ignored() -> None:
    from conftest import REPO_ROOT

    patterns = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "python_env.tar.gz" in patterns and ".python_env.json" in patterns


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_env_reports_the_env(
    tmp_path: Path,
    tools: FakeTools,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_model(tmp_path)
    (tmp_path / "mmetools.toml").write_text(
        '[env]\nbackend = "venv"\npython_version = "3.11"\ntriton_stub_python = "3.11"\n'
    )
    monkeypatch.setenv("MMETOOLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["env", "models/demo"]) == 0
    first = capsys.readouterr().out
    assert "demo: env " in first and "(venv, Python 3.11, built) in demo_postprocessing, " \
        "demo_preprocessing" in first  # fmt: skip
    assert main(["env", "models/demo"]) == 0
    assert "(venv, Python 3.11, from the cache)" in capsys.readouterr().out


def test_cli_env_mismatch_is_an_error_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_model(tmp_path)
    (tmp_path / "mmetools.toml").write_text(
        '[env]\npython_version = "3.12"\ntriton_stub_python = "3.10"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["env", "models/demo"]) == 1
    err = capsys.readouterr().err
    assert "env.python_version is 3.12 but env.triton_stub_python is 3.10" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Real builds


def _run_env_python(archive: Path, target: Path, code: str) -> str:
    target.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    # What Triton's python backend does after unpacking: activate, then run the env's Python.
    result = subprocess.run(
        ["bash", "-c", f'source "{target}/bin/activate" && python -c "{code}"'],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.integration
def test_real_venv_env_imports_numpy(tmp_path: Path) -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    settings = settings_for(tmp_path, python=version, stub=version)
    backend = select_backend(settings)
    if shutil.which(f"python{version}") is None and shutil.which("uv") is None:
        pytest.skip(f"neither python{version} nor uv on PATH")
    model = make_model(tmp_path, requirements="numpy==1.26.4\n")
    packed = pack_env(model, settings, backend=backend)
    assert packed is not None and packed.backend == "venv"
    with tarfile.open(packed.path) as tar:
        assert not any(member.islnk() for member in tar)
    out = _run_env_python(
        model.path / "demo_preprocessing" / "python_env.tar.gz",
        tmp_path / "unpacked",
        "import numpy, sys; print(numpy.__version__, sys.prefix)",
    )
    assert out == f"1.26.4 {tmp_path / 'unpacked'}"


@pytest.mark.slow
@pytest.mark.integration
def test_real_unresolvable_requirements_fail_with_the_tool_output(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    backend = select_backend(settings)
    if not isinstance(backend, VenvPackBackend) or backend.python is None:
        pytest.skip("python3.11 not on PATH")
    model = make_model(tmp_path, requirements="mmetools-no-such-package-anywhere==0.0.1\n")
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings, backend=backend)
    message = str(error.value)
    assert message.startswith(f"model 'demo': building the venv env from {model.requirements_file}")
    assert "mmetools-no-such-package-anywhere" in message


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("conda") is None and shutil.which("mamba") is None, reason="conda not on PATH"
)
def test_real_conda_env_imports_numpy(tmp_path: Path) -> None:
    version = "3.12"
    settings = settings_for(tmp_path, python=version, stub=version)
    settings = replace(settings, env=replace(settings.env, backend="conda"))
    model = make_model(tmp_path, requirements="numpy\n")
    packed = pack_env(model, settings)
    assert packed is not None and packed.backend == "conda"
    out = _run_env_python(
        packed.path, tmp_path / "unpacked", "import numpy, sys; print(sys.version_info[:2])"
    )
    assert out == "(3, 12)"


def test_unwritable_cache_is_a_clear_error(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    settings = replace(settings_for(tmp_path), cache=CacheSettings(dir=str(tmp_path / "blocker")))
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings, backend=VenvPackBackend("/usr/bin/python3", None))
    assert str(error.value) == (
        f"model 'demo': cannot store the env in the cache {tmp_path / 'blocker' / 'envs'}: "
        "Not a directory"
    )
    assert tools.calls == []
