"""`./pants publish` of a triton_model: refuse a package without the evidence of its artifact
test, then `mmetools publish` the tarballs for the branch, in the workspace (credentials,
destinations), as an interactive process. Skipped by `skip_publish=True` or without a branch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pants.core.goals.publish import (
    PublishFieldSet,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.fs import Digest, DigestContents, DigestSubset, MergeDigests, PathGlobs
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel
from pants.vcs.git import GitWorktreeRequest, MaybeGitWorktree

from mmetools_pants.artifact_names import (
    ARTIFACT_SUFFIX,
    EVIDENCE_SUFFIX,
    SHA256_SUFFIX,
    evidence_name,
    sha256_name,
)
from mmetools_pants.subsystem import MmetoolsSubsystem
from mmetools_pants.target_types import SkipTritonModelPublishField, TritonModelSourcesField
from mmetools_pants.tool import MmetoolsTool


class PublishTritonModelRequest(PublishRequest["PublishTritonModelFieldSet"]):
    pass


@dataclass(frozen=True)
class PublishTritonModelFieldSet(PublishFieldSet[PublishTritonModelRequest]):
    publish_request_type = PublishTritonModelRequest
    required_fields = (TritonModelSourcesField,)

    sources: TritonModelSourcesField
    skip_publish: SkipTritonModelPublishField


class MissingEvidenceError(Exception):
    """An artifact without evidence of its artifact test: Pants refuses to publish it."""


def _mentions(value: object, text: str) -> bool:
    if isinstance(value, dict):
        return any(_mentions(v, text) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, text) for v in value)
    return value == text


def check_evidence(files: Mapping[str, bytes], artifact: str) -> None:
    """Refuse ``artifact`` unless its evidence file is there and names its sha256. What the
    evidence must show (cases passed, target) is `mmetools publish`'s gate, checked again there."""
    evidence_path = evidence_name(artifact)
    sha256 = files.get(sha256_name(artifact), b"").decode().split()[:1]
    fix = "run `./pants package` again (it tests the tarball and writes the evidence)"
    if evidence_path not in files:
        raise MissingEvidenceError(f"{artifact}: no {evidence_path} beside it; {fix}")
    try:
        evidence = json.loads(files[evidence_path])
    except ValueError as e:
        raise MissingEvidenceError(f"{evidence_path}: not JSON ({e}); {fix}") from e
    if not sha256 or not _mentions(evidence, sha256[0]):
        raise MissingEvidenceError(
            f"{evidence_path}: is not the evidence of {artifact} (sha256 "
            f"{sha256[0] if sha256 else 'unknown'}); {fix}"
        )


@rule(desc="Publish a triton_model", level=LogLevel.DEBUG)
async def publish_triton_model(
    request: PublishTritonModelRequest, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> PublishProcesses:
    artifacts = tuple(
        artifact.relpath
        for package in request.packages
        for artifact in package.artifacts
        if artifact.relpath and artifact.relpath.endswith(ARTIFACT_SUFFIX)
    )
    if request.field_set.skip_publish.value:
        return PublishProcesses(
            [PublishPackages(names=artifacts, description="(by `skip_publish=True`)")]
        )
    branch = mmetools.branch
    if not branch:
        worktree = await Get(MaybeGitWorktree, GitWorktreeRequest(subdir=Path(tool.build_root)))
        branch = worktree.git_worktree.branch_name if worktree.git_worktree else None
    if not branch:
        return PublishProcesses(
            [
                PublishPackages(
                    names=artifacts,
                    description="(no git branch checked out: set [mmetools].branch)",
                )
            ]
        )
    input_digest = await Get(Digest, MergeDigests(p.digest for p in request.packages))
    sidecars = await Get(
        DigestContents,
        DigestSubset(input_digest, PathGlobs([f"*{SHA256_SUFFIX}", f"*{EVIDENCE_SUFFIX}"])),
    )
    files = {c.path: c.content for c in sidecars}
    for artifact in artifacts:
        check_evidence(files, artifact)
    # Runs in the workspace (mmetools.toml, file: destinations relative to the repository);
    # the artifacts stay in the sandbox that Pants substitutes for {chroot}. --retest: the
    # package process is hermetic (and cached), so it holds no evidence key of this machine or
    # CI; publish runs the MME artifact test again on exactly these bytes when its evidence
    # does not verify with the key here (docs/publish.md, "Only what passed").
    process = InteractiveProcess(
        (
            tool.workspace_bin("mmetools"),
            "publish",
            *(f"{{chroot}}/{a}" for a in artifacts),
            "--branch",
            branch,
            "--retest",
        ),
        env=dict(tool.workspace_env),
        input_digest=input_digest,
        run_in_workspace=True,
    )
    return PublishProcesses(
        [PublishPackages(names=artifacts, process=process, description=f"branch {branch}")]
    )


def rules() -> tuple[object, ...]:
    return (*collect_rules(), *PublishTritonModelFieldSet.rules())
