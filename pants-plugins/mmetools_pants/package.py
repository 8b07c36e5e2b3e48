"""`./pants package` of a triton_model: one hermetic process that runs the library's pipeline
through the CLI on the model's inputs and returns the artifact with its sidecars (the tarball,
its .sha256, its manifest and the evidence of its artifact test)."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.fs import Digest, RemovePrefix, Snapshot
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from mmetools_pants.artifact_names import ARTIFACT_SUFFIX
from mmetools_pants.inputs import TritonModelFieldSet, TritonModelInputs, TritonModelSourcesRequest
from mmetools_pants.processes import model_process
from mmetools_pants.subsystem import MmetoolsSubsystem
from mmetools_pants.tool import TOOL_BIN, MmetoolsTool

DIST_DIR = "dist"


@dataclass(frozen=True)
class TritonModelPackageFieldSet(TritonModelFieldSet, PackageFieldSet):
    pass


def build_argv(model_dir: str, out_dir: str) -> tuple[str, ...]:
    """The one command that builds a model's artifacts into ``out_dir``: the library's pipeline
    (`mmetools build`: validate, fetch, env, package, then the artifact test through the
    SageMaker MME emulation, which writes the evidence), without the model folder's Triton test,
    which Pants runs as its own cached test process."""
    return (f"{TOOL_BIN}/mmetools", "build", model_dir, "--out", out_dir, "--skip", "test")


@rule(desc="Package a triton_model", level=LogLevel.DEBUG)
async def package_triton_model(
    field_set: TritonModelPackageFieldSet, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> BuiltPackage:
    inputs = await Get(TritonModelInputs, TritonModelSourcesRequest(field_set))
    result = await Get(
        ProcessResult,
        Process,
        model_process(
            tool,
            build_argv(field_set.model_dir, DIST_DIR),
            description=f"mmetools build {field_set.model_dir} --skip test",
            input_digest=inputs.digest,
            output_directories=(DIST_DIR,),
            timeout_seconds=mmetools.package_timeout,
        ),
    )
    # The command writes the artifacts under dist/ itself.
    digest = await Get(Digest, RemovePrefix(result.output_digest, DIST_DIR))
    snapshot = await Get(Snapshot, Digest, digest)
    if not any(f.endswith(ARTIFACT_SUFFIX) for f in snapshot.files):
        raise ValueError(
            f"mmetools build {field_set.model_dir} produced no {ARTIFACT_SUFFIX} (got: "
            f"{', '.join(snapshot.files) or 'nothing'})"
        )
    return BuiltPackage(digest, tuple(BuiltPackageArtifact(f) for f in snapshot.files))


def rules() -> tuple[object, ...]:
    return (*collect_rules(), UnionRule(PackageFieldSet, TritonModelPackageFieldSet))
