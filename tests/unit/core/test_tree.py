"""The one walker (core/tree.py): walk and remove a tree without recursion, whatever its depth;
1100 nested folders through `mmetools package`, `fetch` and a staged source test (issue 20, #18)."""

from __future__ import annotations

import ast
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from mmetools.cli import main
from mmetools.core.tree import files_named, remove_tree, walk
from support.build.package_support import make_demo_model

DEPTH = 1100


def _nest(folder: Path, depth: int = DEPTH, *, leaf: str = "leaf.txt") -> str:
    """``depth`` nested folders ``d/`` below ``folder`` with a file at the bottom (made with
    relative steps); the leaf's relative path."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = below
        with open(os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("leaf\n")
    finally:
        os.close(fd)
    return "d/" * depth + leaf


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "deep"
    root.mkdir()
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=True)  # pytest's own clean-up recurses


def test_walk_lists_each_folder_sorted_then_its_subfolders_and_does_not_follow_symlinks(
    tmp_path: Path,
) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "f.dvc").write_text("x")
    (tmp_path / "a.dvc").write_text("x")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "g.dvc").write_text("x")
    (tmp_path / "link").symlink_to("b", target_is_directory=True)
    walked = [e.relative for e in walk(tmp_path, enter=lambda e: e.name != "skip")]
    assert walked == ["a.dvc", "b", "link", "skip", "b/c", "b/c/f.dvc"]
    assert files_named(tmp_path, ".dvc") == [
        tmp_path / "a.dvc", tmp_path / "b/c/f.dvc", tmp_path / "skip/g.dvc"
    ]  # fmt: skip


def test_walk_and_remove_1100_nested_folders(deep: Path) -> None:
    leaf = _nest(deep)
    assert [e.relative for e in walk(deep)][-1] == leaf
    assert files_named(deep, ".txt") == [deep / leaf]
    remove_tree(deep)
    assert not deep.exists()
    deep.mkdir()  # for the fixture's clean-up


def test_remove_tree_beyond_path_max_and_the_open_file_limit(deep: Path) -> None:
    """3000 levels: the path is longer than PATH_MAX (4096) and deeper than 1024 descriptors."""
    _nest(deep, 3000)
    remove_tree(deep)
    assert not deep.exists()
    deep.mkdir()


def test_remove_tree_of_a_file_a_symlink_and_nothing(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep.txt").write_text("x")
    (tmp_path / "link").symlink_to("target", target_is_directory=True)
    remove_tree(tmp_path / "link")
    assert (tmp_path / "target" / "keep.txt").is_file()  # a symlink is unlinked, not followed
    remove_tree(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()


def test_package_and_fetch_of_a_model_with_1100_nested_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect 18: RecursionError tracebacks in dvc.tracked_files (Path.rglob) for package, build
    and fetch; the staged source test's clean-up (shutil.rmtree) recursed the same way."""
    model = make_demo_model(tmp_path)
    step_version = model.path / "demo_preprocessing" / "1"
    leaf = _nest(step_version)
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["fetch", "models/demo"]) == 0, capsys.readouterr().err
        code = main(["package", "models/demo", "--out", "dist", "--no-env"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "Traceback" not in out.err and "RecursionError" not in out.err
        with tarfile.open(tmp_path / "dist" / "demo_3.tar.gz") as tar:
            assert f"demo_preprocessing/1/{leaf}" in tar.getnames()
    finally:
        subprocess.run(["rm", "-rf", str(step_version / "d")], check=True)


def test_a_staged_source_test_with_1100_nested_folders_is_unstaged(tmp_path: Path) -> None:
    from mmetools.testing.source_test import stage_repository, unstage

    model = make_demo_model(tmp_path)
    step_version = model.path / "demo_preprocessing" / "1"
    leaf = _nest(step_version)
    repository = tmp_path / "repository"
    repository.mkdir()
    try:
        staged = stage_repository(model, repository)
        assert (repository / "demo_preprocessing" / "1" / leaf).is_symlink()
        unstage(staged)
        assert list(repository.iterdir()) == []
    finally:
        subprocess.run(["rm", "-rf", str(step_version / "d"), str(repository)], check=True)


# Trees of mmetools' own making, a few levels deep (a venv, a backend build, the templates).
OWN_SHALLOW_TREES = {"serving_env.py", "backends.py", "scaffold.py"}


def test_no_other_walker_in_the_source() -> None:
    """One walker: no Path.rglob or os.walk outside core/tree.py, and no shutil.rmtree where a
    model folder (or a copy of one) is removed."""
    offenders = []
    for path in sorted((REPO_ROOT / "src" / "mmetools").rglob("*.py")):
        if path.name == "tree.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            if node.attr == "rglob" or (
                node.attr == "walk" and isinstance(node.value, ast.Name) and node.value.id == "os"
            ):
                offenders.append(f"{path.name}:{node.lineno} {node.attr}")
            elif node.attr == "rmtree" and path.name not in OWN_SHALLOW_TREES:
                offenders.append(f"{path.name}:{node.lineno} {node.attr}")
    assert offenders == []
