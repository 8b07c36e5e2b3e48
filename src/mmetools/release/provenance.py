"""Who built a published artifact: the git commit, branch and dirty state, and the CI run.

Recorded into the manifest sidecar at publish time only (the tarball and the build's manifest stay
pure functions of their inputs). In CI (``CI=true``) an unknown commit is refused: production
artifacts must say which commit built them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmetools.core import process
from mmetools.core.errors import MmetoolsError, PublishError

UNKNOWN = "unknown"
# Run identifiers CI systems set, first found wins (MMETOOLS_CI_RUN_ID for any other system).
CI_RUN_VARIABLES = (
    "MMETOOLS_CI_RUN_ID",
    "GITHUB_RUN_ID",
    "CI_PIPELINE_ID",
    "BUILDKITE_BUILD_ID",
    "CIRCLE_WORKFLOW_ID",
    "BUILD_ID",
)


@dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str
    dirty: bool | None  # None outside git

    def as_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty}


def git_info(path: Path) -> GitInfo:
    """Commit, branch and dirty flag of the checkout holding ``path`` ("unknown" outside git).

    ``dirty`` covers ``path`` only: uncommitted changes elsewhere do not change this artifact.
    A detached HEAD (as in CI) reports the branch "HEAD".
    """

    def git(*args: str) -> str:
        return process.run(["git", "-C", str(path), *args], context="git").output.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    except MmetoolsError:
        return GitInfo(UNKNOWN, UNKNOWN, None)
    return GitInfo(commit, branch, bool(status))


def changed_since(path: Path, commit: str) -> bool:
    """True unless the folder ``path`` (tracked and untracked files) is exactly as it was at
    ``commit``; also True when that cannot be told (an unknown commit, no git)."""
    try:
        process.run(["git", "-C", str(path), "diff", "--quiet", commit, "--", "."], context="git")
        untracked = process.run(
            ["git", "-C", str(path), "ls-files", "--others", "--exclude-standard", "--", "."],
            context="git",
        ).output.strip()
    except MmetoolsError:
        return True
    return bool(untracked)


def is_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").lower() in ("1", "true", "yes")


def ci_run_id(environ: Mapping[str, str]) -> str | None:
    for variable in CI_RUN_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    return None


def provenance(
    model_dir: Path, branch: str, environ: Mapping[str, str], artifact: str
) -> dict[str, Any]:
    """The provenance record of one publish; PublishError in CI when the commit is unknown."""
    git = git_info(model_dir)
    ci = is_ci(environ)
    if ci and git.commit == UNKNOWN:
        raise PublishError(
            f"{artifact}: CI=true but {model_dir} is not in a git checkout, so the published "
            "manifest could not name its commit; publish from the repository's checkout"
        )
    return {
        "git": git.as_json(),
        "published_branch": branch,
        "ci": ci,
        "ci_run_id": ci_run_id(environ),
    }
