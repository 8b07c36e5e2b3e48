"""The CI configurations' job graphs (.github/workflows/ci.yml, .gitlab-ci.yml), parsed: a branch
publishes to staging without waiting for the toolkit's test suite; production on the production
branch waits for it; only those two jobs publish, one per push (issue 21 item 4).

actionlint and GitLab's CI lint are not available here: these tests parse the YAML and evaluate
the few rules that decide the graph (`needs`, GitLab's stage order, `if`/`rules` on the ref).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT

GITHUB = REPO_ROOT / ".github" / "workflows" / "ci.yml"
GITLAB = REPO_ROOT / ".gitlab-ci.yml"
SUITE = "test"  # the job that runs the toolkit's whole suite (ci/test)
GITLAB_KEYWORDS = {"stages", "default", "variables", "workflow", "include", "image", "cache"}


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), path
    return document


# -------------------------------------------------------------------------------------------------
# GitHub Actions


def _github_jobs(document: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    jobs = (document or _load(GITHUB))["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]


def _github_waits_for(jobs: Mapping[str, Mapping[str, Any]], name: str) -> set[str]:
    """Every job ``name`` waits for (its `needs`, transitively)."""
    seen: set[str] = set()
    todo = _as_list(jobs[name].get("needs"))
    while todo:
        job = todo.pop()
        assert job in jobs, f"{name} needs an unknown job {job!r}"
        if job not in seen:
            seen.add(job)
            todo.extend(_as_list(jobs[job].get("needs")))
    return seen


def _runs(job: Mapping[str, Any]) -> Iterator[str]:
    for step in job.get("steps", []):
        if "run" in step:
            yield str(step["run"])
    for line in job.get("script", []) or []:
        yield str(line)


def _publishers(jobs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Jobs that run ci/pipeline without --no-publish."""
    return sorted(
        name
        for name, job in jobs.items()
        if any("ci/pipeline" in run and "--no-publish" not in run for run in _runs(job))
    )


def test_github_branch_staging_does_not_wait_for_the_suite_and_production_does() -> None:
    jobs = _github_jobs()
    assert _publishers(jobs) == ["production", "staging"]
    assert SUITE not in _github_waits_for(jobs, "staging")
    assert _github_waits_for(jobs, "staging") == set()  # it starts with the push
    assert SUITE in _github_waits_for(jobs, "production")
    assert "models" in _github_waits_for(jobs, "production")


def test_github_exactly_one_publisher_runs_per_ref() -> None:
    jobs = _github_jobs()
    staging, production = str(jobs["staging"]["if"]), str(jobs["production"]["if"])
    assert "github.ref != 'refs/heads/main'" in staging
    assert "github.ref == 'refs/heads/main'" in production
    # failure() of the suite stops production; a skipped shard job (no model) does not
    assert "!failure()" in production and "!cancelled()" in production
    for name in ("staging", "production"):
        # each model's own gates run: no --skip-quality in CI
        assert not any("--skip-quality" in run for run in _runs(jobs[name])), name


def test_github_production_knows_the_push_range() -> None:
    env = _github_jobs()["production"]["env"]
    assert env["MMETOOLS_PUSH_BEFORE"] == "${{ github.event.before }}"
    checkout = _github_jobs()["production"]["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0


def test_the_graph_check_catches_a_staging_job_that_waits_for_the_suite() -> None:
    """The deliberately broken case: today's graph (one `pipeline` job after [test, models])."""
    document = _load(GITHUB)
    broken = dict(_github_jobs(document))
    broken["staging"] = {**broken["staging"], "needs": ["shards", "models"]}
    assert SUITE in _github_waits_for(broken, "staging")


# -------------------------------------------------------------------------------------------------
# GitLab CI


def _gitlab_jobs(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Jobs with their `extends` resolved (one level of hidden templates, as used here)."""
    jobs: dict[str, dict[str, Any]] = {}
    for name, job in document.items():
        if name in GITLAB_KEYWORDS or name.startswith(".") or not isinstance(job, dict):
            continue
        merged: dict[str, Any] = {}
        for parent in _as_list(job.get("extends")):
            merged.update(document[parent])
        merged.update(job)
        jobs[name] = merged
    return jobs


def _gitlab_waits_for(document: Mapping[str, Any], name: str) -> set[str]:
    """Every job ``name`` waits for: its `needs` if it has the key (`needs: []`: none), else
    every job of the earlier stages; transitively."""
    jobs = _gitlab_jobs(document)
    stages = list(document["stages"])

    def direct(job_name: str) -> list[str]:
        job = jobs[job_name]
        if "needs" in job:
            return [n if isinstance(n, str) else n["job"] for n in job["needs"]]
        stage = stages.index(job.get("stage", "test"))
        return [n for n, j in jobs.items() if stages.index(j.get("stage", "test")) < stage]

    seen: set[str] = set()
    todo = direct(name)
    while todo:
        job = todo.pop()
        assert job in jobs, f"{name} needs an unknown job {job!r}"
        if job not in seen:
            seen.add(job)
            todo.extend(direct(job))
    return seen


def test_gitlab_branch_staging_does_not_wait_for_the_suite_and_production_does() -> None:
    document = _load(GITLAB)
    jobs = _gitlab_jobs(document)
    assert _publishers(jobs) == ["production", "staging"]
    assert _gitlab_waits_for(document, "staging") == set()
    assert SUITE in _gitlab_waits_for(document, "production")
    assert "models" in _gitlab_waits_for(document, "production")


def test_gitlab_exactly_one_publisher_runs_per_ref() -> None:
    jobs = _gitlab_jobs(_load(GITLAB))
    assert jobs["staging"]["rules"] == [
        {"if": "$CI_COMMIT_BRANCH && $CI_COMMIT_BRANCH != $CI_DEFAULT_BRANCH"}
    ]
    assert jobs["production"]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    for name in ("staging", "production"):
        assert not any("--skip-quality" in run for run in _runs(jobs[name])), name


def test_the_gitlab_graph_check_catches_a_staging_job_in_stage_order() -> None:
    """The deliberately broken case: a staging job without `needs` waits for every earlier
    stage, the suite included (today's `pipeline` job)."""
    document = dict(_load(GITLAB))
    document["staging"] = {k: v for k, v in document["staging"].items() if k != "needs"}
    assert SUITE in _gitlab_waits_for(document, "staging")


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_no_other_job_publishes(path: Path) -> None:
    document = _load(path)
    jobs = _github_jobs(document) if path == GITHUB else _gitlab_jobs(document)
    gpu = jobs["pipeline-gpu"]
    assert any("ci/pipeline --no-publish" in run for run in _runs(gpu))
