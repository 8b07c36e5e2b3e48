"""`./pants check` of triton_model targets: mypy over each Python step of the model (the
`mypy-model-steps` checker), one hermetic process per step folder."""

from __future__ import annotations

import hashlib
import os

from pants.core.goals.check import CheckRequest, CheckResult, CheckResults
from pants.engine.fs import (
    CreateDigest,
    Digest,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import HydratedSources, HydrateSourcesRequest
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from mmetools_pants.inputs import TOOLKIT_FINGERPRINT_FILE, TritonModelFieldSet
from mmetools_pants.processes import SPECULATION_DELAY_MS, hermetic_env
from mmetools_pants.subsystem import MmetoolsSubsystem
from mmetools_pants.tool import TOOL_BIN, MmetoolsTool, letters


def _mypy_cache_name(folder: str) -> str:
    """An append-only cache name unique to ``folder``."""
    return "mmetools_mypy_" + letters(hashlib.sha256(folder.encode()).hexdigest()[:16])


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
            env={**hermetic_env(tool), "MYPYPATH": folder},
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
    return (*collect_rules(), UnionRule(CheckRequest, TritonModelStepsCheckRequest))
