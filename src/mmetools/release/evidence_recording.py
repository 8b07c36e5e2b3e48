"""Recording test runs as evidence: a Triton test report becomes a :class:`RecordedTest`, and an
artifact test writes it beside the tarball (``<name>_<version>.tar.gz.evidence.json``).

The evidence says which bytes passed: ``mmetools publish`` checks it is for exactly these. A
failure is recorded only over existing evidence (it must not keep saying "passed"); a failed
artifact without evidence gets none. ``mmetools test --artifact`` and the pipeline record here;
the file format itself is :mod:`mmetools.release.evidence`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mmetools.build.manifest import file_sha256
from mmetools.core.settings import Settings
from mmetools.release.evidence import (
    ARTIFACT_TEST,
    CaseOutcome,
    RecordedTest,
    TestKind,
    evidence_path,
    record_test,
)
from mmetools.testing.artifact_test import run_artifacts
from mmetools.testing.source_test import ModelReport, ReportCallback, RunResult
from mmetools.testing.triton import resolve_mode

logger = logging.getLogger(__name__)


def record_of_report(
    kind: TestKind, report: ModelReport, settings: Settings, mode: str, image: str
) -> RecordedTest:
    """What the evidence keeps of one model's test report: outcome, Triton, mode, image, cases."""
    return RecordedTest(
        kind=kind,
        passed=report.passed,
        triton_version=settings.triton.version,
        mode=mode,
        target_image=image,
        cases=tuple(CaseOutcome(r.case.name, r.passed) for r in report.results),
        error=report.error,
    )


def record_artifact_tests(
    artifacts: Sequence[Path],
    run: RunResult,
    settings: Settings,
    *,
    mode: str | None = None,
    image: str | None = None,
) -> None:
    """Add each artifact's test report in ``run`` to its evidence (matched by source path)."""
    chosen = resolve_mode(settings.triton.mode, mode, image)
    shown_image = image or settings.triton.image
    by_source = {report.source: report for report in run.reports}
    for path in artifacts:
        report = by_source.get(str(path))
        if report is None or not path.is_file():
            continue
        if report.passed or evidence_path(path).is_file():
            record = record_of_report(ARTIFACT_TEST, report, settings, chosen, shown_image)
            record_test(path, file_sha256(path), record)
            logger.debug("%s: recorded the artifact test (%s)", path, record.passed)


def run_and_record_artifact_tests(
    artifacts: Sequence[Path],
    settings: Settings,
    *,
    fixtures_dir: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    repeat: int = 1,
    on_report: ReportCallback | None = None,
) -> RunResult:
    """``mmetools test --artifact``: test each artifact through Triton's SageMaker frontend
    (:func:`mmetools.testing.artifact_test.run_artifacts`), then record the outcomes as evidence."""
    run = run_artifacts(
        artifacts,
        settings,
        fixtures_dir=fixtures_dir,
        mode=mode,
        image=image,
        repeat=repeat,
        on_report=on_report,
    )
    record_artifact_tests(artifacts, run, settings, mode=mode, image=image)
    return run
