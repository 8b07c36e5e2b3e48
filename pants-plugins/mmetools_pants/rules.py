"""test / package / publish / check of `triton_model` targets, by running the mmetools CLI.

The plugin never imports mmetools: it runs the repository's own `mmetools` executable
([mmetools].executable, by default the .venv that ci/bootstrap creates) as a Process, so the tool and
the plugin stay separable and Pants only has to know what goes in and what comes out.

Caching: a test or package Process runs in a sandbox holding the model folder's files (configs,
Python steps, requirements, fixtures, DVC pointers), mmetools.toml, and a fingerprint of the toolkit
the model depends on (src/mmetools, uv.lock: the target's dependencies). Pants caches the result on
that digest, so a model whose files, weight pointers and requirements did not change is neither
tested nor packaged again. The weights are not sources (git-ignored, DVC-managed): inside the
process, a small runner fetches them through `mmetools fetch` in the workspace (where DVC's cache and
remote configuration live), copies them into the sandbox and checks each against the md5 of the
pointer Pants hashed, so what runs is exactly what the cache key describes.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, cast

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
from pants.util.logging import LogLevel
from pants.vcs.git import GitWorktreeRequest, MaybeGitWorktree

from mmetools_pants import sandbox_runner
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
DIST_DIR = "dist"


# How this machine reaches package indexes (env packing installs requirements) and S3/DVC
# remotes: proxies, CA bundles, index settings. Passed through by default.
NETWORK_ENV_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE",
    "PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE",
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_NATIVE_TLS", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
)  # fmt: skip


class MmetoolsSubsystem(Subsystem):
    options_scope = "mmetools"
    name = "mmetools"
    help = "The mmetools CLI that tests, packages and publishes triton_model targets."

    skip = SkipOption("test", "check")
    executable = StrOption(
        default=".venv/bin/mmetools",
        help=(
            "The mmetools executable (relative paths are relative to the build root). Its "
            "directory must also hold the `python` (and `mypy`) of the same environment."
        ),
    )
    env_vars = StrListOption(
        default=list(NETWORK_ENV_VARS),
        help=(
            "Environment variables passed to mmetools (NAME, or NAME=value), besides PATH and HOME; "
            "by default the proxy, CA-bundle and package-index variables. Their values are part "
            "of the cache key of test and package processes."
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
        default=3600, help="Seconds packaging a model (env packing included) may take."
    )


@dataclass(frozen=True)
class MmetoolsTool:
    """Absolute paths of the mmetools environment and the environment its processes get."""

    executable: str
    python: str
    mypy: str
    env: EnvironmentVars
    build_root: str


@rule
async def find_mmetools(mmetools: MmetoolsSubsystem, build_root: BuildRoot) -> MmetoolsTool:
    executable = os.path.join(build_root.path, mmetools.executable)
    if not os.path.isfile(executable):
        raise ValueError(
            f"[mmetools].executable: {executable} does not exist. Create the repository's "
            "environment with `ci/bootstrap` first, or point the option at an mmetools executable."
        )
    bin_dir = os.path.dirname(executable)
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(["PATH", "HOME", *mmetools.env_vars]))
    # The environment's own bin first: mmetools starts tools (dvc, the Triton python stub finds
    # its Python through PATH) that must come from the same environment.
    path = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    return MmetoolsTool(
        executable=executable,
        python=os.path.join(bin_dir, "python"),
        mypy=os.path.join(bin_dir, "mypy"),
        env=EnvironmentVars({**env, "PATH": path}),
        build_root=build_root.path,
    )


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
class TritonModelInputsRequest:
    field_set: TritonModelFieldSet


@dataclass(frozen=True)
class TritonModelInputs:
    """The sandbox of a model's processes: its folder, settings, toolkit fingerprint, runner."""

    digest: Digest


@rule(desc="Collect a triton_model's inputs", level=LogLevel.DEBUG)
async def triton_model_inputs(request: TritonModelInputsRequest) -> TritonModelInputs:
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
    # The toolkit (src/mmetools, uv.lock: the target's dependencies) runs from the repository's
    # .venv, not from the sandbox; only its fingerprint goes in, so a toolkit change re-runs the model.
    toolkit = await Get(
        SourceFiles,
        SourceFilesRequest(
            [t[SourcesField] for t in transitive.dependencies if t.has_field(SourcesField)]
        ),
    )
    extras = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(
                    TOOLKIT_FINGERPRINT_FILE,
                    f"{toolkit.snapshot.digest.fingerprint}\n".encode(),
                ),
                FileContent(RUNNER_FILENAME, RUNNER_SOURCE.encode()),
                # The sandbox is a DVC repository whose weights the runner has put in place:
                # mmetools finds the repository root by this folder, and never needs to pull.
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
    return TritonModelInputs(digest)


def weight_exclusions(files: tuple[str, ...]) -> list[str]:
    """Globs excluding every DVC output (`X` or `X/**` beside an `X.dvc` pointer)."""
    outputs = [f[: -len(".dvc")] for f in files if f.endswith(".dvc")]
    return [glob for out in outputs for glob in (f"!{out}", f"!{out}/**")]


def _runner_argv(
    tool: MmetoolsTool, field_set: TritonModelFieldSet, *command: str
) -> tuple[str, ...]:
    return (
        tool.python,
        RUNNER_FILENAME,
        "--build-root",
        tool.build_root,
        "--mmetools",
        tool.executable,
        "--model",
        field_set.model_dir,
        "--",
        *command,
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
    inputs = await Get(TritonModelInputs, TritonModelInputsRequest(field_set))
    report = f"{REPORTS_DIR}/{field_set.model_name}.xml"
    result = await Get(
        FallibleProcessResult,
        Process(
            _runner_argv(tool, field_set, "test", field_set.model_dir, "--junit-xml", report),
            description=f"mmetools test {field_set.model_dir}",
            input_digest=inputs.digest,
            env={**test_extra_env.env, **tool.env},
            output_files=(report,),
            timeout_seconds=mmetools.test_timeout,
            level=LogLevel.DEBUG,
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


@rule(desc="Package a triton_model", level=LogLevel.DEBUG)
async def package_triton_model(
    field_set: TritonModelPackageFieldSet, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> BuiltPackage:
    inputs = await Get(TritonModelInputs, TritonModelInputsRequest(field_set))
    result = await Get(
        ProcessResult,
        Process(
            _runner_argv(tool, field_set, "package", field_set.model_dir, "--out", DIST_DIR),
            description=f"mmetools package {field_set.model_dir}",
            input_digest=inputs.digest,
            env=tool.env,
            output_directories=(DIST_DIR,),
            timeout_seconds=mmetools.package_timeout,
            level=LogLevel.DEBUG,
        ),
    )
    # `package` writes the digest under dist/ itself.
    digest = await Get(Digest, RemovePrefix(result.output_digest, DIST_DIR))
    snapshot = await Get(Snapshot, Digest, digest)
    if not any(f.endswith(".tar.gz") for f in snapshot.files):
        raise ValueError(
            f"mmetools package {field_set.model_dir} produced no .tar.gz (got: "
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


@rule(desc="Publish a triton_model", level=LogLevel.DEBUG)
async def publish_triton_model(
    request: PublishTritonModelRequest, mmetools: MmetoolsSubsystem, tool: MmetoolsTool
) -> PublishProcesses:
    artifacts = tuple(
        artifact.relpath
        for package in request.packages
        for artifact in package.artifacts
        if artifact.relpath and artifact.relpath.endswith(".tar.gz")
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
    # Runs in the workspace (mmetools.toml, file: destinations relative to the repository);
    # the artifacts stay in the sandbox that Pants substitutes for {chroot}.
    process = InteractiveProcess(
        (tool.executable, "publish", *(f"{{chroot}}/{a}" for a in artifacts), "--branch", branch),
        env=tool.env,
        input_digest=input_digest,
        run_in_workspace=True,
    )
    return PublishProcesses(
        [PublishPackages(names=artifacts, process=process, description=f"branch {branch}")]
    )


# --------------------------------------------------------------------------------------------------
def _mypy_cache_name(folder: str) -> str:
    """An append-only cache name unique to ``folder``. Pants 2.17 accepts only lowercase letters
    and underscores (digits are refused, whatever its message says), so hex digits become letters.
    """
    digest = hashlib.sha256(folder.encode()).hexdigest()[:16]
    return "mmetools_mypy_" + digest.translate(str.maketrans("0123456789", "ghijklmnop"))


# check: mypy over each Python step of the model
# --------------------------------------------------------------------------------------------------


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
    # Every step's code is `<step>/1/model.py`: mypy refuses two modules of the same name in one
    # run, so it runs once per folder, with that folder as the import root (helpers beside
    # model.py, or train.py importing its neighbours, resolve as they do at run time).
    folders: dict[str, list[str]] = {}
    digest_of_folder: dict[str, Digest] = {}
    input_digests = await MultiGet(
        Get(Digest, MergeDigests([sources.snapshot.digest, config])) for sources in all_sources
    )
    for sources, digest in zip(all_sources, input_digests):
        for path in sources.snapshot.files:
            if path.endswith(".py"):
                folder = os.path.dirname(path)
                folders.setdefault(folder, []).append(path)
                digest_of_folder[folder] = digest
    processes = [
        Process(
            (tool.mypy, "--config-file", MYPY_CONFIG, "--cache-dir", ".mypy_cache", *sorted(paths)),
            description=f"mypy {folder}/",
            input_digest=digest_of_folder[folder],
            env={**tool.env, "MYPYPATH": folder},
            # One cache per folder: these processes run concurrently, and mypy's cache is not
            # safe to share between concurrent runs (it crashed with INTERNAL ERROR).
            append_only_caches={_mypy_cache_name(folder): ".mypy_cache"},
            level=LogLevel.DEBUG,
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
