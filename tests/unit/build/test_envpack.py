"""Packed Python envs: backends' commands, the cache, the steps' copies and EXECUTION_ENV_PATH."""

from __future__ import annotations

import dataclasses

import io
import json
import os
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mmetools.core import process
from mmetools.cli import main
from mmetools.build.env import (
    CondaPackBackend,
    EnvBackend,
    VenvPackBackend,
    env_hash,
    normalized_requirements,
    pack_env,
    select_backend,
)
from mmetools.build.env.backends import _PROBE_VERSION
from mmetools.core.errors import ConfigError, EnvPackError
from mmetools.core.interpreters import LocalPython, find_python
from mmetools.build.env import REQUIREMENTS_DIGEST, requirements_digest
from mmetools.core.process import CompletedCommand
from mmetools.core.settings import CacheSettings
from mmetools.build.env.bytecode import _COMPILE
from mmetools.core.targets import resolve_target
from support.build.envpack_support import (
    IMAGE_2409,
    IMAGE_2412,
    POST_CONFIG,
    make_model,
    settings_for,
)

TARGET = resolve_target(IMAGE_2412)
LOCAL_312 = LocalPython(
    Path("/opt/python/3.12.1/bin/python3.12"), Path("/opt/python/3.12.1"), "3.12"
)
POST_WITHOUT_ENV = POST_CONFIG.split("parameters:")[0]
PARAMETER_BLOCK = (
    "parameters: {\n"
    '  key: "EXECUTION_ENV_PATH"\n'
    '  value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" }\n'
    "}"
)


def small_env_archive(path: Path, *, hard_link: bool = False, gz: bool = True) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, text in (("bin/activate", b"# activate\n"), ("pyvenv.cfg", b"home = /x\n"),
                           ("lib/python3.12/site-packages/a/__pycache__/m.pyc", b"x")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(text)
            info.mtime, info.uid, info.uname = 12345, 1000, "builder"
            tar.addfile(info, io.BytesIO(text))
        if hard_link:
            link = tarfile.TarInfo("bin/activate2")
            link.type = tarfile.LNKTYPE
            link.linkname = "bin/activate"
            tar.addfile(link)


class FakeTools:
    """Records every command; answers the version probe; writes the archive packers produce."""

    def __init__(self, python_version: str = "3.12", fail_with: str | None = None) -> None:
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
            small_env_archive(Path(argv[argv.index("--output") + 1]), hard_link=self.hard_link,
                              gz="tar" not in argv)  # fmt: skip
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
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    packed = pack_env(model, settings, backend=CondaPackBackend("/opt/conda/bin/mamba"))
    assert packed is not None and packed.backend == "conda" and not packed.cached
    conda_pack = str(Path(sys.executable).parent / "conda-pack")
    requirements = str(model.requirements_file)
    assert _normalized(tools.calls) == [
        ["/opt/conda/bin/mamba", "create", "--yes", "--quiet", "--copy", "--prefix",
         "<work>/env", "python=3.12", "pip"],
        ["<work>/env/bin/python", "-c", _PROBE_VERSION],
        ["<work>/env/bin/python", "-m", "pip", "install", "--no-input",
         "--disable-pip-version-check", "--only-binary=:all:", "-r", requirements],
        [conda_pack, "--prefix", "<work>/env", "--output", "<work>/entry/python_env.tar.gz",
         "--ignore-missing-files", "--quiet"],
    ]  # fmt: skip
    # the build happened beside the cache, and its temp folder is gone
    assert Path(_workdir_of(tools.calls)).parent == settings.cache_dir / "envs"
    assert not Path(_workdir_of(tools.calls)).exists()


def test_venv_backend_commands_build_for_the_target(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    backend = VenvPackBackend(python=LOCAL_312, uv="/usr/local/bin/uv")
    packed = pack_env(model, settings_for(tmp_path), backend=backend)
    assert _normalized(tools.calls) == [
        ["/usr/local/bin/uv", "venv", "--quiet", "--no-config", "--python",
         "/opt/python/3.12.1/bin/python3.12", "<work>/env"],
        ["<work>/env/bin/python", "-c", _PROBE_VERSION],
        ["/usr/local/bin/uv", "pip", "install", "--quiet", "--no-config", "--python",
         "<work>/env/bin/python", "--python-platform", "x86_64-manylinux_2_39",
         "--python-version", "3.12", "--no-build", "--link-mode", "copy",
         "-r", str(model.requirements_file)],
        # hash-based bytecode, compiled by the target-minor Python (mmetools.build.env.bytecode)
        ["/opt/python/3.12.1/bin/python3.12", "-I", "-c", _COMPILE,
         "<work>/env/lib/python3.12/site-packages", "<work>/env"],
        [sys.executable, "-m", "venv_pack", "--prefix", "<work>/env", "--output",
         "<work>/venv-pack.tar", "--format", "tar", "--python-prefix", "/usr", "--quiet"],
    ]  # fmt: skip
    # venv-pack's archive was normalised: fixed owners and times, no bytecode, canonical cfg
    assert packed is not None
    with tarfile.open(packed.path) as tar:
        members = {m.name: m for m in tar}
        cfg = tar.extractfile("pyvenv.cfg").read()  # type: ignore[union-attr]
    assert sorted(members) == ["bin/activate", "bin/python", "bin/python3", "bin/python3.12",
                               "pyvenv.cfg"]  # fmt: skip
    assert members["bin/python"].linkname == "/usr/bin/python3.12"
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    assert cfg == b"home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.12\n"


def test_venv_backend_without_uv_is_a_clear_error(tmp_path: Path, tools: FakeTools) -> None:
    with pytest.raises(EnvPackError, match="the venv backend needs uv"):
        pack_env(
            make_model(tmp_path), settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, None)
        )


def test_env_with_the_wrong_python_is_refused(tmp_path: Path, tools: FakeTools) -> None:
    tools.python_version = "3.10"
    model = make_model(tmp_path)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    workdir = _workdir_of(tools.calls)
    assert str(error.value) == (
        f"the venv backend created an env with Python 3.10 at {workdir}/env/bin/python, but "
        "Python 3.12 was asked for (the serving target's Python)"
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
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert select_backend(auto) == CondaPackBackend(str(conda))
    assert select_backend(settings) == VenvPackBackend(python=None, uv=uv_beside)
    mamba = _fake_executable(tmp_path / "bin", "mamba")
    assert select_backend(auto) == CondaPackBackend(str(mamba))


# --------------------------------------------------------------------------------------------
# Target, requirements


def test_unknown_image_needs_explicit_values(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    settings = settings_for(tmp_path, image="registry.example/my-triton:1")
    with pytest.raises(ConfigError) as error:
        pack_env(model, settings)
    assert "image 'registry.example/my-triton:1' is not a known NGC/SageMaker Triton release" in (
        str(error.value)
    )
    assert "set triton_version, python_version, interpreter_path, glibc, glibcxx, " \
        "numpy2_supported explicitly in [target]" in str(error.value)  # fmt: skip
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


def test_hash_depends_on_requirements_and_target_not_on_this_machine(tmp_path: Path) -> None:
    backend: EnvBackend = VenvPackBackend(LOCAL_312, "uv")

    def digest(text: str, image: str = IMAGE_2412, chosen: EnvBackend = backend) -> str:
        path = tmp_path / "requirements.txt"
        path.write_text(text)
        return env_hash(normalized_requirements(path, "demo"), resolve_target(image), chosen)

    base = digest("numpy==1.26.4\npillow==10.4.0\n")
    assert digest("# pinned\npillow==10.4.0   # images\n\n  numpy==1.26.4\n") == base
    assert digest("numpy==1.26.3\npillow==10.4.0\n") != base
    assert digest("numpy==1.26.4\npillow==10.4.0\n", image=IMAGE_2409) != base
    assert digest("numpy==1.26.4\npillow==10.4.0\n", chosen=CondaPackBackend("conda")) != base
    # another local interpreter of the same minor version: the same env
    other = VenvPackBackend(LocalPython(Path("/usr/bin/python3.12"), Path("/usr"), "3.12"), None)
    assert digest("numpy==1.26.4\npillow==10.4.0\n", chosen=other) == base


def test_failing_install_names_the_model_and_file_with_the_tool_output(
    tmp_path: Path, tools: FakeTools
) -> None:
    tools.fail_with = "ERROR: No matching distribution found for nosuchpackage==9"
    model = make_model(tmp_path, requirements="nosuchpackage==9\n")
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    assert str(error.value) == (
        f"model 'demo': building the venv env from {model.requirements_file} failed: "
        f"installing {model.requirements_file} failed with exit code 1:\n"
        "Collecting things\nERROR: No matching distribution found for nosuchpackage==9"
    )
    assert list((tmp_path / "cache" / "envs").iterdir()) == []  # no half-built entry


def test_conda_archive_with_hard_links_is_refused(tmp_path: Path, tools: FakeTools) -> None:
    tools.hard_link = True
    model = make_model(tmp_path)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=CondaPackBackend("conda"))
    assert str(error.value) == (
        "model 'demo': the packed env holds hard links, which Triton cannot unpack: bin/activate2"
    )
    assert list((tmp_path / "cache" / "envs").iterdir()) == []


def test_venv_hard_links_become_files(tmp_path: Path, tools: FakeTools) -> None:
    tools.hard_link = True
    packed = pack_env(make_model(tmp_path), settings_for(tmp_path),
                      backend=VenvPackBackend(LOCAL_312, "uv"))  # fmt: skip
    assert packed is not None
    with tarfile.open(packed.path) as tar:
        assert tar.getmember("bin/activate2").isfile()


# --------------------------------------------------------------------------------------------
# Cache and step copies


def test_cache_hit_skips_the_build(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    backend = VenvPackBackend(LOCAL_312, "/usr/local/bin/uv")
    first = pack_env(model, settings, backend=backend)
    assert first is not None and not first.cached and len(tools.calls) == 5
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
    backend = VenvPackBackend(LOCAL_312, "uv")
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


def test_a_lock_for_the_target_python_is_what_gets_installed(
    tmp_path: Path, tools: FakeTools
) -> None:
    model = make_model(tmp_path)
    lock = model.path / "requirements-3.12.lock"
    digest = f"{REQUIREMENTS_DIGEST}{requirements_digest(model)}\n"
    # numpy 2: another version than the 24.12 image's 1.26.4, so packed (not substituted)
    lock.write_text(digest + "numpy==2.1.0 \\\n    --hash=sha256:abc\n")
    packed = pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    install = next(call for call in tools.calls if "install" in call)
    assert install[-3:] == ["--require-hashes", "-r", str(lock)]
    # a lock for another Python is not used for this target
    tools.calls.clear()
    lock.rename(model.path / "requirements-3.10.lock")
    other = pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    assert packed is not None and other is not None and other.env_hash != packed.env_hash
    assert next(call for call in tools.calls if "install" in call)[-1] == str(
        model.requirements_file
    )


def test_model_without_python_steps_needs_no_env(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    for step in ("demo_preprocessing", "demo_postprocessing"):
        config = model.path / step / "config.pbtxt"
        config.write_text(config.read_text().replace('backend: "python"', 'backend: "identity"'))
    assert pack_env(model, settings_for(tmp_path)) is None
    assert tools.calls == []


# --------------------------------------------------------------------------------------------
# EXECUTION_ENV_PATH: required in the committed config, never written


def test_missing_execution_env_path_is_refused_and_no_config_written(
    tmp_path: Path, tools: FakeTools
) -> None:
    model = make_model(tmp_path)
    config = model.path / "demo_postprocessing" / "config.pbtxt"
    config.write_text(POST_WITHOUT_ENV)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    assert str(error.value) == (
        f"{config}: Python step demo_postprocessing sets no EXECUTION_ENV_PATH, so Triton would "
        "not use the env the env step packs for it; add these lines to the "
        f"config:\n{PARAMETER_BLOCK.replace('/python_env.tar.gz', '/../demo_env.tar.gz')}"
    )
    assert tools.calls == [] and config.read_text() == POST_WITHOUT_ENV


def test_configs_are_never_written(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    configs = sorted(model.path.glob("*/config.pbtxt"))
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in configs]
    pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in configs] == before


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "$$TRITON_MODEL_DIRECTORY/../shared/python_env.tar.gz",
            "leaves the step folder through '..'; mmetools places the env at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz or $$TRITON_MODEL_DIRECTORY/../demo_env.tar.gz",
        ),
        (
            "python_env.tar.gz",
            "must start with $$TRITON_MODEL_DIRECTORY/ (Triton does not resolve a relative path "
            "against the step folder), e.g. $$TRITON_MODEL_DIRECTORY/python_env.tar.gz",
        ),
        (
            "$$TRITON_MODEL_DIRECTORY/env.tar.gz",
            "must name the packed env: mmetools places it at "
            "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz or $$TRITON_MODEL_DIRECTORY/../demo_env.tar.gz",
        ),
    ],
)
def test_wrong_execution_env_path_is_refused_before_building(
    tmp_path: Path, tools: FakeTools, value: str, problem: str
) -> None:
    model = make_model(tmp_path)
    config = model.path / "demo_postprocessing" / "config.pbtxt"
    original = POST_WITHOUT_ENV + (
        f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{value}" }} }}\n'
    )
    config.write_text(original)
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
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
        f'[env]\nbackend = "venv"\n[target]\nimage = "{IMAGE_2412}"\n'
    )
    monkeypatch.setenv("MMETOOLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    find_python.cache_clear()
    monkeypatch.setattr("mmetools.build.env.backends.find_python", lambda version: LOCAL_312)
    assert main(["env", "models/demo"]) == 0
    first = capsys.readouterr().out
    assert "demo: env " in first and "(venv, Python 3.12, built) in demo_postprocessing, " \
        "demo_preprocessing" in first  # fmt: skip
    assert main(["env", "models/demo"]) == 0
    assert "(venv, Python 3.12, from the cache)" in capsys.readouterr().out


def test_cli_unknown_target_is_an_error_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_model(tmp_path)
    (tmp_path / "mmetools.toml").write_text('[target]\nimage = "my/triton:latest"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["env", "models/demo"]) == 1
    err = capsys.readouterr().err
    assert "image 'my/triton:latest' is not a known NGC/SageMaker Triton release" in err
    assert "Traceback" not in err


def test_unwritable_cache_is_a_clear_error(tmp_path: Path, tools: FakeTools) -> None:
    model = make_model(tmp_path)
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    settings = replace(settings_for(tmp_path), cache=CacheSettings(dir=str(tmp_path / "blocker")))
    with pytest.raises(EnvPackError) as error:
        pack_env(model, settings, backend=VenvPackBackend(LOCAL_312, "uv"))
    assert str(error.value) == (
        f"model 'demo': cannot store the env in the cache {tmp_path / 'blocker' / 'envs'}: "
        "Not a directory"
    )
    assert tools.calls == []


# --------------------------------------------------------------------------------------------
# A cache hit is checked against the sha256 its entry recorded (issue 20, defect 9)


def _tampered_archive(path: Path) -> None:
    """The cached env with one extra .pth that would run code at interpreter start."""
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        evil = b"import os; os.system('echo owned')\n"
        info = tarfile.TarInfo("lib/python3.12/site-packages/zzz_evil.pth")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getnames()


@pytest.mark.parametrize("damage", ["tampered", "truncated", "record_lost", "archive_lost"])
def test_a_damaged_cache_entry_is_discarded_and_rebuilt_never_shipped(
    tmp_path: Path, tools: FakeTools, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """Defect 9: an entry with an extra .pth was copied into the steps under the clean env hash;
    a truncated one made every later package fail without naming the cache, run after run."""
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    backend = VenvPackBackend(LOCAL_312, "uv")
    first = pack_env(model, settings, backend=backend)
    assert first is not None
    clean = first.path.read_bytes()
    entry = first.path.parent
    if damage == "tampered":
        _tampered_archive(first.path)
    elif damage == "truncated":
        first.path.write_bytes(clean[: len(clean) // 2])
    elif damage == "record_lost":
        (entry / "env.json").unlink()
    else:
        first.path.unlink()  # an entry folder left half-made
    tools.calls.clear()
    caplog.set_level("WARNING")
    again = pack_env(model, settings, backend=backend)
    assert again is not None and not again.cached and again.env_hash == first.env_hash
    assert tools.calls  # built again
    assert f"env cache entry {entry} is damaged" in caplog.text
    assert again.path.read_bytes() == clean
    for copy in again.steps:
        assert copy.read_bytes() == clean
        assert not any(name.endswith(".pth") for name in _names(copy))
    caplog.clear()
    tools.calls.clear()
    third = pack_env(model, settings, backend=backend)  # the rebuilt entry is a clean hit
    assert (
        third is not None
        and third.cached
        and tools.calls == []
        and "is damaged (" not in caplog.text
    )


def test_a_step_copy_changed_in_place_is_copied_again(tmp_path: Path, tools: FakeTools) -> None:
    """A sibling: a step's copy was kept on its size and mtime; a same-size edit with the mtime
    put back stayed in the step (and shipped)."""
    model = make_model(tmp_path)
    settings = settings_for(tmp_path)
    backend = VenvPackBackend(LOCAL_312, "uv")
    first = pack_env(model, settings, backend=backend)
    assert first is not None
    copy = first.steps[0]
    clean = copy.read_bytes()
    stat = copy.stat()
    copy.write_bytes(bytes(b ^ 0xFF for b in clean[:16]) + clean[16:])
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    pack_env(model, settings, backend=backend)
    assert copy.read_bytes() == clean


def test_an_entry_changed_between_check_and_copy_is_refused_naming_the_cache(
    tmp_path: Path, tools: FakeTools
) -> None:
    from mmetools.build.env.cache import place_in_step

    model = make_model(tmp_path)
    first = pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    assert first is not None
    _tampered_archive(first.path)
    step = first.steps[0].parent
    first.steps[0].unlink()
    with pytest.raises(EnvPackError) as error:
        place_in_step(first.path, first.env_hash, step)
    assert f"env cache entry {first.path.parent}: python_env.tar.gz has sha256" in str(error.value)
    assert not first.steps[0].exists()


def test_a_long_build_path_trampoline_becomes_venv_packs_shebang() -> None:
    # Found on main after the owned build folders (.build.tmp-<pid>-<random>): in a deep cache
    # the installer writes a /bin/sh trampoline naming the build folder, which venv-pack leaves.
    from mmetools.build.env.normalize import _short_shebang

    body = b"# -*- coding: utf-8 -*-\nimport sys\n"
    long_form = b"#!/bin/sh\n'''exec' '/deep/build/env/bin/python' \"$0\" \"$@\"\n' '''\n" + body
    assert _short_shebang(long_form) == b"#!/usr/bin/env python\n" + body
    assert _short_shebang(b"#!/usr/bin/env python\n" + body) == b"#!/usr/bin/env python\n" + body
