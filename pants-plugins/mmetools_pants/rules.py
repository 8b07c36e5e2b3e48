"""test / package / publish / check of `triton_model` targets, by running the mmetools CLI.

The plugin never imports mmetools: it runs the mmetools environment (ci/bootstrap's .venv) as
processes. Their cache keys must be the same on every machine and checkout that would produce the
same bytes, and differ whenever the bytes could differ. So (docs/scaling.md):

- Model processes (env, test, package, check) are hermetic: their argv and environment hold no
  credentials, no HOME, no absolute path of the checkout or the machine. Paths are relative to the
  sandbox, or `{chroot}/...`, which Pants substitutes after computing the key.
- The mmetools environment is reached through an append-only named cache whose *name* is its
  content identity (uv.lock, pyproject.toml, ci/bootstrap with the torch pin, and every installed
  distribution's version: torch, nvidia-pytriton's Triton, ...). An uncached link process points
  `<cache>/venv` at this checkout's environment; the identity also goes into the sandbox as a
  file, since Pants leaves append-only caches out of the key.
- Weights enter as a digest: one uncached fetch process per model (the only one with credentials,
  HOME and the workspace path) runs `mmetools fetch` in the workspace and returns the weights,
  checked against the pointers Pants hashed.
- The packed Python env is built by its own process (network settings in its key) into an
  in-sandbox mmetools cache; test and package get that cache's digest, so the env archive enters
  their key by content and they never build one.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Iterable, Mapping, cast

from pants.base.build_root import BuildRoot
from pants.core.goals.check import CheckRequest, CheckResult, CheckResults
from pants.core.goals.multi_tool_goal_helper import SkippableSubsystem
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.goals.test import (
    TestExtraEnv,
    TestFieldSet,
    TestRequest,
    TestResult,
    TestSubsystem,
)
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    Directory,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import (
    FallibleProcessResult,
    InteractiveProcess,
    Process,
    ProcessCacheScope,
    ProcessResult,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    Target,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.engine.unions import UnionRule
from pants.option.option_types import IntOption, SkipOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.vcs.git import GitWorktreeRequest, MaybeGitWorktree

from mmetools_pants import sandbox_runner
from mmetools_pants.artifact_names import (
    ARTIFACT_SUFFIX,
    EVIDENCE_SUFFIX,
    SHA256_SUFFIX,
    evidence_name,
    sha256_name,
)
from mmetools_pants.target_types import (
    SkipTritonModelPublishField,
    SkipTritonModelTestsField,
    TritonModelSourcesField,
)

SETTINGS_FILE = "mmetools.toml"
RUNNER_FILENAME = "__mmetools_sandbox_runner.py"
# The runner is a plain stdlib script run by the mmetools environment's Python (see its docstring).
RUNNER_SOURCE = inspect.getsource(sandbox_runner)
TOOLKIT_FINGERPRINT_FILE = "__mmetools_toolkit.fingerprint"
REPORTS_DIR = "__reports"
WEIGHTS_DIR = "__weights"
DIST_DIR = "dist"
# Where model processes see the mmetools environment: <TOOL_MOUNT> is the named cache, whose
# `venv` entry the link process points at the checkout's environment.
TOOL_MOUNT = ".mmetools-tool"
TOOL_BIN = f"{TOOL_MOUNT}/venv/bin"
# MMETOOLS_CACHE_DIR of model processes: inside the sandbox, so what they read is in their key.
MODEL_CACHE_DIR = ".mmetools-cache"
# The system tools model processes may start (sh, tar, ...), after the environment's own bin.
SYSTEM_PATH = "/usr/bin:/bin"
# The files that define the mmetools environment (ci/bootstrap holds the torch pin).
TOOL_DEFINITION_FILES = ("pyproject.toml", "uv.lock", "ci/bootstrap")

# Settings overrides that change what a model process does or builds: passed to model processes
# and so part of their keys (mmetools.toml, in the sandbox, holds the rest).
MODEL_ENV_VARS = (
    "MMETOOLS_ENV_BACKEND", "MMETOOLS_TARGET_IMAGE", "MMETOOLS_TRITON_MODE",
    "MMETOOLS_TRITON_IMAGE",
)  # fmt: skip
# How this machine reaches package indexes: only the env-building process installs packages.
NETWORK_ENV_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL", "UV_NATIVE_TLS",
)  # fmt: skip
# Credentials, destinations and the user's caches: only the uncached fetch and publish processes,
# which run in the workspace, see them (with PATH and HOME).
WORKSPACE_ENV_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
    "MMETOOLS_STAGING_URI", "MMETOOLS_PRODUCTION_URI", "MMETOOLS_PRODUCTION_BRANCH",
    "MMETOOLS_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "CI", "GITHUB_RUN_ID",
    "CI_PIPELINE_ID",
)  # fmt: skip

# Prints what identifies the environment beyond its definition files: the interpreter and every
# installed distribution (torch from its pin, nvidia-pytriton's bundled Triton, ...).
PROBE_SCRIPT = """\
import importlib.metadata as m, json, platform, sys
dists = sorted({(d.metadata["Name"] or "?").lower(): d.version for d in m.distributions()}.items())
print(json.dumps({"python": platform.python_version(), "implementation": sys.implementation.name,
                  "machine": platform.machine(), "distributions": dists}, sort_keys=True))
"""
# Points <named cache>/venv at the environment, atomically (another session may be using it).
LINK_SCRIPT = (
    f'ln -sfn "$1" {TOOL_MOUNT}/.venv.$$ && mv -Tf {TOOL_MOUNT}/.venv.$$ {TOOL_MOUNT}/venv'
)


class MmetoolsSubsystem(Subsystem):
    options_scope = "mmetools"
    name = "mmetools"
    help = "The mmetools CLI that tests, packages and publishes triton_model targets."

    skip = SkipOption("test", "check")
    venv = StrOption(
        default=".venv",
        help=(
            "The mmetools environment (relative paths are relative to the build root; ci/bootstrap "
            "creates .venv). Its path is in no cache key: processes reach it through a named cache "
            "named by the environment's content, so checkouts at other paths share results."
        ),
    )
    env_vars = StrListOption(
        default=list(MODEL_ENV_VARS),
        help=(
            "Environment variables passed to the hermetic model processes (NAME, or NAME=value): "
            "settings overrides that change what is built. Their values are part of the cache keys."
        ),
    )
    network_env_vars = StrListOption(
        default=list(NETWORK_ENV_VARS),
        help=(
            "Environment variables of the process that builds a model's packed env (it installs "
            "packages): proxies, CA bundles, index settings. Part of that process's key."
        ),
    )
    workspace_env_vars = StrListOption(
        default=list(WORKSPACE_ENV_VARS),
        help=(
            "Environment variables of the uncached processes that run in the workspace (fetching "
            "weights, publishing), besides PATH and HOME: credentials, endpoints, destinations."
        ),
    )
    branch = StrOption(
        default=None,
        help=(
            "The branch `publish` publishes for (staging on any branch, production on the "
            "production branch of mmetools.toml). Default: the current git branch. CI systems that "
            "check out a detached HEAD set this (PANTS_MMETOOLS_BRANCH)."
        ),
    )
    test_timeout = IntOption(
        default=1800, help="Seconds a model's Triton test may take before Pants stops it."
    )
    package_timeout = IntOption(
        default=3600,
        help="Seconds packaging a model and testing its artifact may take (also env building).",
    )


def _letters(hex_digest: str) -> str:
    """Pants 2.17 accepts only lowercase letters and underscores in cache names (digits are
    refused, whatever its message says), so hex digits become letters."""
    return hex_digest.translate(str.maketrans("0123456789", "ghijklmnop"))


@dataclass(frozen=True)
class MmetoolsTool:
    """The mmetools environment, and the environments of the processes that run it."""

    venv: str  # absolute: only for the uncached processes that run in the workspace
    identity: str  # sha256 of the environment's definition and installed content
    model_env: FrozenDict[str, str]
    network_env: FrozenDict[str, str]
    workspace_env: FrozenDict[str, str]
    build_root: str

    @property
    def cache_name(self) -> str:
        return "mmetools_tool_" + _letters(self.identity[:24])

    @property
    def append_only_caches(self) -> FrozenDict[str, str]:
        return FrozenDict({self.cache_name: TOOL_MOUNT})

    def workspace_bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)


# How long a model process waits for the remote cache's answer before it also starts locally.
# Pants' default (0) starts every process at once and cancels it on a hit: that is a Triton
# server started for nothing. A lookup takes milliseconds; a miss starts the process at once.
SPECULATION_DELAY_MS = 10_000

# Package downloads of uv and pip: append-only caches that only make installs faster.
PACKAGE_CACHES = {"mmetools_uv": ".uv-cache", "mmetools_pip": ".pip-cache"}


def _hermetic_env(tool: MmetoolsTool, extra: Mapping[str, str] = FrozenDict()) -> dict[str, str]:
    """The environment of a model process: the same on every machine and checkout of one kind.
    Installing requirements (the packed env, the local test's serving env) needs the network
    settings; they are in the key."""
    return {
        **extra,
        **tool.network_env,
        **tool.model_env,
        "PATH": f"{{chroot}}/{TOOL_BIN}:{SYSTEM_PATH}",
        "MMETOOLS_CACHE_DIR": f"{{chroot}}/{MODEL_CACHE_DIR}",
        "UV_CACHE_DIR": "{chroot}/.uv-cache",
        "PIP_CACHE_DIR": "{chroot}/.pip-cache",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _model_caches(tool: MmetoolsTool) -> dict[str, str]:
    return {**tool.append_only_caches, **PACKAGE_CACHES}


@rule(desc="Identify the mmetools environment", level=LogLevel.DEBUG)
async def find_mmetools(mmetools: MmetoolsSubsystem, build_root: BuildRoot) -> MmetoolsTool:
    venv = os.path.normpath(os.path.join(build_root.path, mmetools.venv))
    if not os.path.isfile(os.path.join(venv, "bin", "mmetools")):
        raise ValueError(
            f"[mmetools].venv: {venv} holds no bin/mmetools. Create the repository's environment "
            "with `ci/bootstrap` first (./pants does when .venv is missing), or point the option "
            "at one."
        )
    model_vars, network_vars, workspace_vars, definition = await MultiGet(
        Get(EnvironmentVars, EnvironmentVarsRequest(mmetools.env_vars)),
        Get(EnvironmentVars, EnvironmentVarsRequest(mmetools.network_env_vars)),
        Get(
            EnvironmentVars,
            EnvironmentVarsRequest(["PATH", "HOME", *mmetools.workspace_env_vars]),
        ),
        Get(
            DigestContents,
            PathGlobs(
                TOOL_DEFINITION_FILES,
                glob_match_error_behavior=GlobMatchErrorBehavior.warn,
                description_of_origin="the mmetools environment's definition ([mmetools])",
            ),
        ),
    )
    # Uncached: what is installed can change under the same uv.lock (torch is pip-installed).
    probe = await Get(
        ProcessResult,
        Process(
            (os.path.join(venv, "bin", "python"), "-I", "-c", PROBE_SCRIPT),
            description="Probe the mmetools environment's content",
            env={**model_vars, "PATH": SYSTEM_PATH},
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    identity = hashlib.sha256()
    for content in sorted(definition, key=lambda c: c.path):
        identity.update(f"{content.path}\0{len(content.content)}\0".encode() + content.content)
    identity.update(probe.stdout)
    tool = MmetoolsTool(
        venv=venv,
        identity=identity.hexdigest(),
        model_env=FrozenDict(model_vars),
        network_env=FrozenDict(network_vars),
        workspace_env=FrozenDict(workspace_vars),
        build_root=build_root.path,
    )
    await Get(
        ProcessResult,
        Process(
            ("/bin/sh", "-c", LINK_SCRIPT, "sh", venv),
            description="Link the mmetools environment into its named cache",
            env={"PATH": SYSTEM_PATH},
            append_only_caches=tool.append_only_caches,
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    return tool


# --------------------------------------------------------------------------------------------------
# The model's inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonModelFieldSet(FieldSet):
    required_fields = (TritonModelSourcesField,)

    sources: TritonModelSourcesField

    @property
    def model_dir(self) -> str:
        return self.address.spec_path

    @property
    def model_name(self) -> str:
        return PurePath(self.address.spec_path).name


@dataclass(frozen=True)
class TritonModelTestFieldSet(TritonModelFieldSet, TestFieldSet):
    skip_tests: SkipTritonModelTestsField

    @classmethod
    def opt_out(cls, tgt: Target) -> bool:
        return bool(tgt[SkipTritonModelTestsField].value)


@dataclass(frozen=True)
class TritonModelPackageFieldSet(TritonModelFieldSet, PackageFieldSet):
    pass


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
            env=_hermetic_env(tool),
            output_directories=(MODEL_CACHE_DIR,),
            append_only_caches=_model_caches(tool),
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


def model_process(
    tool: MmetoolsTool,
    argv: tuple[str, ...],
    *,
    description: str,
    input_digest: Digest,
    timeout_seconds: int,
    extra_env: Mapping[str, str] = FrozenDict(),
    output_files: Iterable[str] = (),
    output_directories: Iterable[str] = (),
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL,
) -> Process:
    """A hermetic process of the mmetools environment on a model's inputs."""
    return Process(
        argv,
        description=description,
        input_digest=input_digest,
        env=_hermetic_env(tool, extra_env),
        output_files=tuple(output_files),
        output_directories=tuple(output_directories),
        append_only_caches=_model_caches(tool),
        timeout_seconds=timeout_seconds,
        level=LogLevel.DEBUG,
        cache_scope=cache_scope,
        remote_cache_speculation_delay_millis=SPECULATION_DELAY_MS,
    )


# --------------------------------------------------------------------------------------------------
# test
# --------------------------------------------------------------------------------------------------


class TritonModelTestRequest(TestRequest):
    # SkippableSubsystem is a Protocol whose `skip` mypy cannot match with the option descriptor.
    tool_subsystem = cast("type[SkippableSubsystem]", MmetoolsSubsystem)
    field_set_type = TritonModelTestFieldSet


@rule(desc="Test a triton_model in a local Triton", level=LogLevel.DEBUG)
async def run_triton_model_test(
    batch: TritonModelTestRequest.Batch[TritonModelTestFieldSet, Any],
    test_subsystem: TestSubsystem,
    test_extra_env: TestExtraEnv,
    mmetools: MmetoolsSubsystem,
    tool: MmetoolsTool,
) -> TestResult:
    field_set = batch.single_element
    inputs = await Get(TritonModelInputs, TritonModelSourcesRequest(field_set))
    report = f"{REPORTS_DIR}/{field_set.model_name}.xml"
    result = await Get(
        FallibleProcessResult,
        Process,
        model_process(
            tool,
            (f"{TOOL_BIN}/mmetools", "test", field_set.model_dir, "--junit-xml", report),
            description=f"mmetools test {field_set.model_dir}",
            input_digest=inputs.digest,
            extra_env=test_extra_env.env,
            output_files=(report,),
            timeout_seconds=mmetools.test_timeout,
            # Cache successful runs only, and nothing with --force.
            cache_scope=(
                ProcessCacheScope.PER_SESSION
                if test_subsystem.force
                else ProcessCacheScope.SUCCESSFUL
            ),
        ),
    )
    report_digest = await Get(Digest, DigestSubset(result.output_digest, PathGlobs([report])))
    # [test].report_dir gets <name>.xml.
    xml_results = await Get(Snapshot, RemovePrefix(report_digest, REPORTS_DIR))
    return TestResult.from_fallible_process_result(
        result, field_set.address, test_subsystem.output, xml_results=xml_results
    )


# --------------------------------------------------------------------------------------------------
# package
# --------------------------------------------------------------------------------------------------


def pipeline_argv(model_dir: str, out_dir: str) -> tuple[str, ...]:
    """The one command that builds a model's artifacts into ``out_dir``: package it, then test
    the tarball through the SageMaker MME emulation, which writes its evidence on a pass.
    With `mmetools build` (the pipeline's single command) this becomes
    ``(f"{TOOL_BIN}/mmetools", "build", model_dir, "--out", out_dir)``."""
    script = (
        'set -e; mmetools package "$1" --out "$2"; '
        'for artifact in "$2"/*.tar.gz; do mmetools test --artifact "$artifact"; done'
    )
    return ("/bin/sh", "-c", script, "sh", model_dir, out_dir)


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
            pipeline_argv(field_set.model_dir, DIST_DIR),
            description=f"mmetools package {field_set.model_dir}",
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
            f"mmetools package {field_set.model_dir} produced no {ARTIFACT_SUFFIX} (got: "
            f"{', '.join(snapshot.files) or 'nothing'})"
        )
    return BuiltPackage(digest, tuple(BuiltPackageArtifact(f) for f in snapshot.files))


# --------------------------------------------------------------------------------------------------
# publish
# --------------------------------------------------------------------------------------------------


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
    # the artifacts stay in the sandbox that Pants substitutes for {chroot}.
    process = InteractiveProcess(
        (
            tool.workspace_bin("mmetools"),
            "publish",
            *(f"{{chroot}}/{a}" for a in artifacts),
            "--branch",
            branch,
        ),
        env=dict(tool.workspace_env),
        input_digest=input_digest,
        run_in_workspace=True,
    )
    return PublishProcesses(
        [PublishPackages(names=artifacts, process=process, description=f"branch {branch}")]
    )


# --------------------------------------------------------------------------------------------------
# check: mypy over each Python step of the model
# --------------------------------------------------------------------------------------------------


def _mypy_cache_name(folder: str) -> str:
    """An append-only cache name unique to ``folder``."""
    return "mmetools_mypy_" + _letters(hashlib.sha256(folder.encode()).hexdigest()[:16])


class TritonModelStepsCheckRequest(CheckRequest[TritonModelFieldSet]):
    field_set_type = TritonModelFieldSet
    tool_name = "mypy-model-steps"


MYPY_CONFIG = "build-support/mypy.ini"


@rule(desc="Type-check the Python steps of triton_model targets", level=LogLevel.DEBUG)
async def check_triton_model_steps(
    request: TritonModelStepsCheckRequest, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> CheckResults:
    if mmetools.skip:
        return CheckResults([], checker_name=request.tool_name)
    all_sources = await MultiGet(
        Get(HydratedSources, HydrateSourcesRequest(fs.sources)) for fs in request.field_sets
    )
    config = await Get(
        Digest,
        PathGlobs(
            [MYPY_CONFIG],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin="the mmetools_pants plugin",
        ),
    )
    identity = await Get(
        Digest,
        CreateDigest(
            [FileContent(TOOLKIT_FINGERPRINT_FILE, f"environment {tool.identity}\n".encode())]
        ),
    )
    # Every step's code is `<step>/1/model.py`: mypy refuses two modules of the same name in one
    # run, so it runs once per folder, with that folder as the import root (helpers beside
    # model.py, or train.py importing its neighbours, resolve as they do at run time).
    folders: dict[str, list[str]] = {}
    digest_of_folder: dict[str, Digest] = {}
    input_digests = await MultiGet(
        Get(Digest, MergeDigests([sources.snapshot.digest, config, identity]))
        for sources in all_sources
    )
    for sources, digest in zip(all_sources, input_digests):
        for path in sources.snapshot.files:
            if path.endswith(".py"):
                folder = os.path.dirname(path)
                folders.setdefault(folder, []).append(path)
                digest_of_folder[folder] = digest
    processes = [
        Process(
            (
                f"{TOOL_BIN}/mypy",
                "--config-file",
                MYPY_CONFIG,
                "--cache-dir",
                ".mypy_cache",
                *sorted(paths),
            ),
            description=f"mypy {folder}/",
            input_digest=digest_of_folder[folder],
            env={**_hermetic_env(tool), "MYPYPATH": folder},
            # One cache per folder: these processes run concurrently, and mypy's cache is not
            # safe to share between concurrent runs (it crashed with INTERNAL ERROR).
            append_only_caches={
                **tool.append_only_caches,
                _mypy_cache_name(folder): ".mypy_cache",
            },
            level=LogLevel.DEBUG,
            remote_cache_speculation_delay_millis=SPECULATION_DELAY_MS,
        )
        for folder, paths in sorted(folders.items())
    ]
    results = await MultiGet(Get(FallibleProcessResult, Process, p) for p in processes)
    return CheckResults(
        [
            CheckResult.from_fallible_process_result(r, partition_description=p.description)
            for p, r in zip(processes, results)
        ],
        checker_name=request.tool_name,
    )


def rules() -> tuple[object, ...]:
    return (
        *collect_rules(),
        *TritonModelTestRequest.rules(),
        UnionRule(PackageFieldSet, TritonModelPackageFieldSet),
        UnionRule(CheckRequest, TritonModelStepsCheckRequest),
        *PublishTritonModelFieldSet.rules(),
    )
