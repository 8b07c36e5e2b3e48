"""`mmetools staging prune` on a folder destination, in a real git repository: which folders
are gone or merged, dry run by default, never production nor the production branch's staging."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mmetools import cli
from mmetools.core.settings import load_settings
from mmetools.release.publish import branch_slug
from mmetools.release.staging import known_branches, plan_prune


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, name: str) -> None:
    (repo / name).write_text(name)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", name)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main; feature/live (a commit of its own); feature/merged (merged into main); a remote
    with feature/remote-only; staging folders for those, for gone branches and odd names."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "CI")
    (repo / ".gitignore").write_text(".published/\n")
    _commit(repo, "first")
    _git(repo, "switch", "-q", "-c", "feature/live")
    _commit(repo, "live")
    _git(repo, "switch", "-q", "-c", "feature/merged", "main")
    _commit(repo, "merged")
    _git(repo, "switch", "-q", "main")
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge", "feature/merged")
    remote = tmp_path / "remote.git"
    _git(repo, "clone", "-q", "--bare", str(repo), str(remote))
    _git(repo, "remote", "add", "origin", str(remote))
    _git(remote, "branch", "feature/remote-only", "feature/live")
    _git(repo, "fetch", "-q", "origin")
    staging = repo / ".published" / "staging"
    for branch in ("main", "feature/live", "feature/merged", "feature/remote-only",
                   "feature/gone", "Fix_42"):  # fmt: skip
        folder = staging / branch_slug(branch)
        folder.mkdir(parents=True)
        (folder / "demo_1.tar.gz").write_bytes(b"artifact")
    (staging / "Not A Slug").mkdir()  # not made by mmetools
    (staging / "loose-file.txt").write_text("a file, not a folder")
    (repo / ".published" / "production").mkdir()
    (repo / ".published" / "production" / "demo_1.tar.gz").write_bytes(b"artifact")
    monkeypatch.chdir(repo)
    for variable in ("MMETOOLS_STAGING_URI", "MMETOOLS_PRODUCTION_URI"):
        monkeypatch.delenv(variable, raising=False)
    return repo


def _verdicts(repo: Path) -> dict[str, tuple[str, str]]:
    settings = load_settings(repo)
    known = known_branches(repo, "main")
    return {f.slug: (f.verdict, f.reason) for f in plan_prune(settings, known)}


def test_gone_and_merged_branches_are_pruned_the_others_kept(repo: Path) -> None:
    verdicts = _verdicts(repo)
    assert verdicts == {
        "main": ("keep", "the production branch's staging (main)"),
        "feature~live": ("keep", "the branch exists and is not merged"),
        "feature~remote-only": ("keep", "the branch exists and is not merged"),
        "feature~merged": ("prune", "merged into origin/main"),
        "feature~gone": ("prune", "no such branch (local or remote-tracking)"),
        branch_slug("Fix_42"): ("prune", "no such branch (local or remote-tracking)"),
        "Not A Slug": ("keep", "not a branch folder (its name is no branch slug)"),
    }


def test_the_default_is_a_dry_run(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (repo / ".published" / "staging").iterdir())
    assert cli.main(["staging", "prune"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 3 folder(s) would be deleted; rerun with --yes to delete them" in out
    assert sorted(p.name for p in (repo / ".published" / "staging").iterdir()) == before


def test_yes_deletes_exactly_the_pruned_folders(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["staging", "prune", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "deleted 3 staging folder(s)" in out
    left = sorted(p.name for p in (repo / ".published" / "staging").iterdir())
    assert left == ["Not A Slug", "feature~live", "feature~remote-only", "loose-file.txt", "main"]
    assert (repo / ".published" / "production" / "demo_1.tar.gz").read_bytes() == b"artifact"
    assert cli.main(["staging", "prune", "--yes"]) == 0
    assert "nothing to prune" in capsys.readouterr().out


def test_a_local_branch_ahead_of_its_merged_remote_is_kept(repo: Path) -> None:
    """origin/feature/merged is merged, but the local branch has a new commit: not merged."""
    _git(repo, "switch", "-q", "feature/merged")
    _commit(repo, "more work")
    _git(repo, "switch", "-q", "main")
    assert _verdicts(repo)["feature~merged"] == ("keep", "the branch exists and is not merged")


def test_a_staging_folder_that_holds_production_is_never_pruned(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production inside staging under a name that decodes as a gone branch ('release')."""
    staging = repo / ".published" / "staging"
    (staging / "release" / "prod").mkdir(parents=True)
    monkeypatch.setenv("MMETOOLS_PRODUCTION_URI", (staging / "release" / "prod").as_uri())
    verdict, reason = _verdicts(repo)["release"]
    assert verdict == "keep" and reason.startswith("it is or holds the production destination")
    assert cli.main(["staging", "prune", "--yes"]) == 0
    assert (staging / "release" / "prod").is_dir()


def test_the_production_branch_comes_from_settings(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMETOOLS_PRODUCTION_BRANCH", "feature/live")
    settings = load_settings(repo)
    folders = plan_prune(settings, known_branches(repo, "feature/live"))
    verdicts = {f.slug: f.verdict for f in folders}
    assert verdicts["feature~live"] == "keep"  # the production branch's staging now
    assert verdicts["main"] == "keep"  # main has a merge feature/live lacks: not merged
    assert verdicts["feature~merged"] == "keep"  # merged into main, not into feature/live


def test_without_a_production_branch_it_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _git(tmp_path, "init", "-q", "-b", "other")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".published" / "staging" / "x").mkdir(parents=True)
    assert cli.main(["staging", "prune"]) == 2
    assert "no branch origin/main or main here" in capsys.readouterr().err


def test_unsplit_staging_has_nothing_to_prune(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "mmetools.toml").write_text("[publish]\nnamespace_staging_by_branch = false\n")
    assert cli.main(["staging", "prune", "--yes"]) == 0
    assert "staging is not split by branch" in capsys.readouterr().out
    assert (repo / ".published" / "staging" / "feature~gone").is_dir()
