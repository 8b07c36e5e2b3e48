"""What a model process gets in its sandbox: the model's sources, its weights and its packed env.

- Sources: the model folder (weights left out: their pointers stand for them), mmetools.toml, the
  toolkit's and the environment's fingerprint, an empty .dvc/.
- Weights enter as a digest: one uncached fetch process per model (the only one with credentials,
  HOME and the workspace path) runs `mmetools fetch` in the workspace and returns the weights,
  checked against the pointers Pants hashed.
- The packed Python env is built by its own process (network settings in its key) into an
  in-sandbox mmetools cache; test and package get that cache's digest, so the env archive enters
  their key by content and they never build one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import PurePath

from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestSubset,
    Directory,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.util.logging import LogLevel

from mmetools_pants import sandbox_runner
from mmetools_pants.processes import (
    MODEL_CACHE_DIR,
    SPECULATION_DELAY_MS,
    hermetic_env,
    model_caches,
)
from mmetools_pants.subsystem import MmetoolsSubsystem
from mmetools_pants.target_types import (
    TENANTS_DIR,
    TritonModelSourcesField,
    TritonModelTenantField,
)
from mmetools_pants.tool import TOOL_BIN, MmetoolsTool

SETTINGS_FILE = "mmetools.toml"
RUNNER_FILENAME = "__mmetools_sandbox_runner.py"
# The runner is a plain stdlib script run by the mmetools environment's Python (see its docstring).
RUNNER_SOURCE = inspect.getsource(sandbox_runner)
TOOLKIT_FINGERPRINT_FILE = "__mmetools_toolkit.fingerprint"
WEIGHTS_DIR = "__weights"


@dataclass(frozen=True)
class TritonModelFieldSet(FieldSet):
    required_fields = (TritonModelSourcesField,)

    sources: TritonModelSourcesField
    tenant: TritonModelTenantField

    @property
    def model_dir(self) -> str:
        """models/<name>, or a family's tenant's models/<family>/tenants/<tenant>."""
        if self.tenant.value:
            return f"{self.address.spec_path}/{TENANTS_DIR}/{self.tenant.value}"
        return self.address.spec_path

    @property
    def model_name(self) -> str:
        """<name>, or a tenant's <family>-<tenant> (mmetools' model/folder.py tenant_model_name)."""
        name = PurePath(self.address.spec_path).name
        return f"{name}-{self.tenant.value}" if self.tenant.value else name


@dataclass(frozen=True)
class TritonModelSourcesRequest:
    field_set: TritonModelFieldSet


@dataclass(frozen=True)
class TritonModelSources:
    """What Pants hashes of a model: its folder (weights left out: their pointers stand for
    them), mmetools.toml, the toolkit's and the environment's fingerprint, an empty .dvc/."""

    digest: Digest


@rule(desc="Collect a triton_model's sources", level=LogLevel.DEBUG)
async def triton_model_sources(
    request: TritonModelSourcesRequest, tool: MmetoolsTool
) -> TritonModelSources:
    field_set = request.field_set
    sources_get = Get(HydratedSources, HydrateSourcesRequest(field_set.sources))
    settings_get = Get(
        Digest,
        PathGlobs(
            [SETTINGS_FILE],
            glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
        ),
    )
    transitive_get = Get(TransitiveTargets, TransitiveTargetsRequest([field_set.address]))
    sources, settings, transitive = await MultiGet(sources_get, settings_get, transitive_get)
    # The toolkit (src/mmetools, uv.lock: the target's dependencies) runs from the mmetools
    # environment, not from the sandbox; its fingerprint goes in, so a change re-runs the model.
    toolkit = await Get(
        SourceFiles,
        SourceFilesRequest(
            [t[SourcesField] for t in transitive.dependencies if t.has_field(SourcesField)]
        ),
    )
    fingerprint = f"toolkit {toolkit.snapshot.digest.fingerprint}\nenvironment {tool.identity}\n"
    extras = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(TOOLKIT_FINGERPRINT_FILE, fingerprint.encode()),
                # The sandbox is a DVC repository whose weights are in place: mmetools finds the
                # repository root by this folder, and never needs to pull.
                Directory(".dvc"),
            ]
        ),
    )
    # Weight files fetched into the workspace are DVC outputs: DVC git-ignores them with a
    # .gitignore beside them, which Pants does not read (only the root one). Leave them out, so
    # the digest is the same before and after a fetch: their pointers stand for them.
    model_files = await Get(
        Digest,
        DigestSubset(
            sources.snapshot.digest,
            PathGlobs(["**", *weight_exclusions(sources.snapshot.files)]),
        ),
    )
    digest = await Get(Digest, MergeDigests([model_files, settings, extras]))
    return TritonModelSources(digest)


def weight_exclusions(files: tuple[str, ...]) -> list[str]:
    """Globs excluding every DVC output (`X` or `X/**` beside an `X.dvc` pointer)."""
    outputs = [f[: -len(".dvc")] for f in files if f.endswith(".dvc")]
    return [glob for out in outputs for glob in (f"!{out}", f"!{out}/**")]


@dataclass(frozen=True)
class TritonModelWeights:
    """The model's DVC-tracked files at their repository paths, checked against the pointers."""

    digest: Digest


@rule(desc="Fetch a triton_model's weights", level=LogLevel.DEBUG)
async def fetch_triton_model_weights(
    request: TritonModelSourcesRequest, tool: MmetoolsTool
) -> TritonModelWeights:
    field_set = request.field_set
    sources = await Get(TritonModelSources, TritonModelSourcesRequest(field_set))
    runner = await Get(Digest, CreateDigest([FileContent(RUNNER_FILENAME, RUNNER_SOURCE.encode())]))
    input_digest = await Get(Digest, MergeDigests([sources.digest, runner]))
    # The one process with credentials and the workspace's path: never cached, so neither is in
    # any key; what it returns (the weights) is, by content.
    result = await Get(
        ProcessResult,
        Process(
            (
                tool.workspace_bin("python"),
                RUNNER_FILENAME,
                "--build-root",
                tool.build_root,
                "--mmetools",
                tool.workspace_bin("mmetools"),
                "--model",
                field_set.model_dir,
                "--out",
                WEIGHTS_DIR,
            ),
            description=f"mmetools fetch {field_set.model_dir}",
            input_digest=input_digest,
            env=dict(tool.workspace_env),
            output_directories=(WEIGHTS_DIR,),
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    return TritonModelWeights(await Get(Digest, RemovePrefix(result.output_digest, WEIGHTS_DIR)))


@dataclass(frozen=True)
class TritonModelEnv:
    """The in-sandbox mmetools cache holding the model's packed env (empty: no Python steps)."""

    digest: Digest


@rule(desc="Build a triton_model's packed Python env", level=LogLevel.DEBUG)
async def build_triton_model_env(
    request: TritonModelSourcesRequest, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> TritonModelEnv:
    field_set = request.field_set
    sources = await Get(TritonModelSources, TritonModelSourcesRequest(field_set))
    # Keyed on the model's files, settings, toolkit, environment and network settings.
    result = await Get(
        ProcessResult,
        Process(
            (f"{TOOL_BIN}/mmetools", "env", field_set.model_dir),
            description=f"mmetools env {field_set.model_dir}",
            input_digest=sources.digest,
            env=hermetic_env(tool),
            output_directories=(MODEL_CACHE_DIR,),
            append_only_caches=model_caches(tool),
            timeout_seconds=mmetools.package_timeout,
            level=LogLevel.DEBUG,
            remote_cache_speculation_delay_millis=SPECULATION_DELAY_MS,
        ),
    )
    return TritonModelEnv(result.output_digest)


@dataclass(frozen=True)
class TritonModelInputs:
    """The sandbox of a model's test and package processes: sources, weights and packed env."""

    digest: Digest


@rule(desc="Collect a triton_model's inputs", level=LogLevel.DEBUG)
async def triton_model_inputs(request: TritonModelSourcesRequest) -> TritonModelInputs:
    sources, weights, env = await MultiGet(
        Get(TritonModelSources, TritonModelSourcesRequest, request),
        Get(TritonModelWeights, TritonModelSourcesRequest, request),
        Get(TritonModelEnv, TritonModelSourcesRequest, request),
    )
    return TritonModelInputs(
        await Get(Digest, MergeDigests([sources.digest, weights.digest, env.digest]))
    )


def rules() -> tuple[object, ...]:
    return (*collect_rules(),)
