"""`mmetools lock`: hash-pinned resolutions per model for the target's Python, checked current;
direct references (git URLs, local paths, source distributions, wheels for a newer glibc) refused
at lock time, naming the requirement (issue 20, defect 20)."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.model.folder import ModelFolder
from mmetools.core.settings import load_settings


def test_committed_locks_are_current_for_the_default_target() -> None:
    """What CI's `mmetools lock --check` guards, for the examples (read only, no resolver)."""
    from mmetools.build.env import locked_digest, lock_path, requirements_digest

    target = load_settings().target
    for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "requirements.txt").is_file()):
        model = ModelFolder(folder)
        text = lock_path(model, target).read_text(encoding="utf-8")
        assert locked_digest(text) == requirements_digest(model), folder
        assert "--hash=sha256:" in text


def _wheel(folder: Path, name: str, tag: str, requires: str = "") -> Path:
    """A minimal wheel of ``name`` 1.0 for ``tag`` (optionally with one Requires-Dist)."""
    info = f"{name}-1.0.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    if requires:
        metadata += f"Requires-Dist: {requires}\n"
    files = {
        f"{name}/__init__.py": b"",
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"  # noqa: E501
        for path, data in files.items()
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = folder / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def _sdist(folder: Path, name: str) -> Path:
    path = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in {
            f"{name}-1.0/PKG-INFO": f"Metadata-Version: 2.2\nName: {name}\nVersion: 1.0\n",
            f"{name}-1.0/pyproject.toml": f"[project]\nname = '{name}'\nversion = '1.0'\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local package index (find-links, no network): a pure wheel, an sdist-only package, a
    wheel for glibc 2.41 only, and a wheel whose dependency is a direct file reference."""
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links, "okpkg", "py3-none-any")
    _sdist(links, "sdistonly")
    _wheel(links, "newglibc", "py3-none-manylinux_2_41_x86_64")
    hidden = tmp_path / "elsewhere"
    hidden.mkdir()
    dependency = _wheel(hidden, "hiddendep", "py3-none-any")
    _wheel(links, "pullsfile", "py3-none-any", f"hiddendep @ {dependency.as_uri()}")
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(links))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    return links


def _model(tmp_path: Path, requirements: str) -> Path:
    folder = tmp_path / "models" / "intent_classifier"
    shutil.copytree(MODELS_DIR / "intent_classifier", folder)
    (folder / "requirements.txt").write_text(requirements)
    return folder


def _lock(folder: Path, *, check: bool) -> int:
    return main(["lock", *(["--check"] if check else []), str(folder)])


def test_lock_of_a_plain_index_package_is_written(
    tmp_path: Path, index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the same local index locks a plain wheel, with no path of this machine."""
    folder = _model(tmp_path, "okpkg==1.0\n")
    assert _lock(folder, check=False) == 0, capsys.readouterr().err
    text = (folder / "requirements-3.12.lock").read_text()
    assert "okpkg==1.0 \\\n    --hash=sha256:" in text
    assert str(tmp_path) not in text and "file:" not in text


REFUSED = [
    ("git_url", "mypkg @ git+https://example.invalid/mypkg.git@v1",
     "is a VCS (git) URL"),
    ("file_url", "okpkg @ {links}/okpkg-1.0-py3-none-any.whl",
     "is a local file or folder: a path of this machine"),
    ("local_path", "./vendor/okpkg-1.0-py3-none-any.whl",
     "is a local file or folder: a path of this machine"),
    ("sdist_reference", "sdistonly @ {links}/sdistonly-1.0.tar.gz",
     "is a source distribution: the env is installed from wheels only"),
    ("wheel_for_glibc_2_41", "newglibc @ {links}/newglibc-1.0-py3-none-manylinux_2_41_x86_64.whl",
     "is a wheel for a newer glibc than the target's (2.39)"),
    ("https_url", "okpkg @ https://example.invalid/okpkg-1.0-py3-none-any.whl",
     "is a direct URL"),
]  # fmt: skip


@pytest.mark.parametrize("check", [False, True], ids=["lock", "lock_check"])
@pytest.mark.parametrize(("case", "requirement", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_lock_refuses_a_direct_reference_naming_it(
    tmp_path: Path,
    index: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    requirement: str,
    why: str,
    check: bool,
) -> None:
    """Defect 20: these were locked (the file URL as this machine's absolute path), and `env`
    failed later with uv's message; the git URL was even cloned."""
    line = requirement.replace("{links}", index.as_uri())
    folder = _model(tmp_path, f"numpy==1.26.4\n{line}\n")
    lock = folder / "requirements-3.12.lock"
    before = lock.read_bytes()
    assert _lock(folder, check=check) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'requirements.txt'}:2: model 'intent_classifier': '{line}' {why}" in (
        " ".join(err.split())
    )
    assert "Traceback" not in err
    assert lock.read_bytes() == before  # nothing written


@pytest.mark.parametrize(
    ("requirement", "why"),
    [("sdistonly", "sdistonly==1.0 has no usable wheels"),
     ("newglibc", "newglibc==1.0 has no wheels with a matching platform tag")],
)  # fmt: skip
def test_lock_refuses_an_index_package_without_a_wheel_for_the_target(
    tmp_path: Path, index: Path, capsys: pytest.CaptureFixture[str], requirement: str, why: str
) -> None:
    folder = _model(tmp_path, f"{requirement}\n")
    assert _lock(folder, check=False) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{folder / 'requirements.txt'}: model 'intent_classifier' does not resolve" in err
    assert why in err


def test_lock_refuses_a_dependency_that_is_a_direct_reference(
    tmp_path: Path, index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sibling: requirements.txt is clean, but a dependency brings `name @ file:///...`
    (uv refuses it; what the resolver writes is checked again all the same)."""
    folder = _model(tmp_path, "pullsfile==1.0\n")
    lock = folder / "requirements-3.12.lock"
    before = lock.read_bytes()
    assert _lock(folder, check=False) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{folder / 'requirements.txt'}: model 'intent_classifier' does not resolve" in err
    assert "hiddendep @ file:///" in err
    assert lock.read_bytes() == before


def test_a_resolution_holding_a_direct_reference_is_refused() -> None:
    from mmetools.build.env.lock import lock_problem

    target = load_settings().target
    text = "okpkg==1.0 \\\n    --hash=sha256:ab\nhiddendep @ file:///x/hiddendep-1.0-py3-none-any.whl \\\n"
    problem = lock_problem(text, target)
    assert problem is not None and problem[0] == 3 and "is a local file or folder" in problem[1]
    assert (
        lock_problem("okpkg==1.0 ; python_version >= '3.8' \\\n    --hash=sha256:ab\n", target)
        is None
    )
    assert lock_problem("okpkg>=1.0\n", target) == (
        1,
        "'okpkg>=1.0' is not pinned to a version of the package index (name==version)",
    )


def test_env_and_lock_check_refuse_a_committed_lock_with_a_path(
    tmp_path: Path, index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sibling: a lock edited by hand (or made before these checks) is refused by `lock --check`
    and by the env step, naming its line, before uv installs anything."""
    folder = _model(tmp_path, "okpkg==1.0\n")
    assert _lock(folder, check=False) == 0
    lock = folder / "requirements-3.12.lock"
    text = lock.read_text().replace(
        "okpkg==1.0", f"okpkg @ {index.as_uri()}/okpkg-1.0-py3-none-any.whl"
    )
    lock.write_text(text)
    capsys.readouterr()
    number = (
        text.splitlines().index(next(l for l in text.splitlines() if l.startswith("okpkg"))) + 1
    )
    assert _lock(folder, check=True) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{lock}:{number}: model 'intent_classifier': 'okpkg @ file:///" in err
    assert main(["env", str(folder)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{lock}:{number}: model 'intent_classifier': 'okpkg @ file:///" in err
