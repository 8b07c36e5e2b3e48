"""`./pants test` of a triton_model: `mmetools test models/X` (the fixtures on a real Triton) in
a hermetic process, its JUnit XML report returned to Pants. Successful runs are cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from pants.core.goals.multi_tool_goal_helper import SkippableSubsystem
from pants.core.goals.test import (
    TestExtraEnv,
    TestFieldSet,
    TestRequest,
    TestResult,
    TestSubsystem,
)
from pants.engine.fs import Digest, DigestSubset, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.util.logging import LogLevel

from mmetools_pants.inputs import TritonModelFieldSet, TritonModelInputs, TritonModelSourcesRequest
from mmetools_pants.processes import model_process
from mmetools_pants.subsystem import MmetoolsSubsystem
from mmetools_pants.target_types import SkipTritonModelTestsField
from mmetools_pants.tool import TOOL_BIN, MmetoolsTool

REPORTS_DIR = "__reports"


@dataclass(frozen=True)
class TritonModelTestFieldSet(TritonModelFieldSet, TestFieldSet):
    skip_tests: SkipTritonModelTestsField

    @classmethod
    def opt_out(cls, tgt: Target) -> bool:
        return bool(tgt[SkipTritonModelTestsField].value)


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


def rules() -> tuple[object, ...]:
    return (*collect_rules(), *TritonModelTestRequest.rules())
