"""Recording test runs as evidence: a Triton test report becomes a :class:`RecordedTest`, and an
artifact test writes it beside the tarball (``<name>_<version>.evidence.json``), signed with
this process's evidence key, for the serving target it was tested for, with the run's id and the
commit of the model folder.

The evidence says which bytes passed: ``mmetools publish`` checks it is for exactly these. A
failure is recorded only over existing evidence (it must not keep saying "passed"); a failed
artifact without evidence gets none. Evidence is written only for the bytes that were tested
(hashed before the run and again after it) and only for the model's own fixtures (a test with
``--fixtures DIR`` shows nothing about the model's cases). ``mmetools test --artifact`` and the
pipeline record here; the file format is :mod:`mmetools.release.evidence`.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmetools.build.files import ArtifactFiles
from mmetools.build.manifest import file_sha256
from mmetools.core.settings import Settings
from mmetools.model.folder import FIXTURES_DIR, own_folder
from mmetools.release.evidence import (
    ARTIFACT_TEST,
    CaseOutcome,
    RecordedTest,
    EvidenceTarget,
    TestKind,
    EvidenceRun,
    evidence_path,
    record_test,
)
from mmetools.release.evidence_key import EvidenceKey, load_evidence_key
from mmetools.release.provenance import ci_run_id, git_info
from mmetools.testing.artifact_test import run_artifacts
from mmetools.testing.source_test import ModelReport, ReportCallback, RunResult
from mmetools.testing.triton import resolve_mode

logger = logging.getLogger(__name__)


def signing_key(settings: Settings, environ: Mapping[str, str] | None = None) -> EvidenceKey:
    """The key this testing process signs evidence with (created on first use)."""
    key = load_evidence_key(settings.cache_dir, environ, create=True)
    assert key is not None  # create=True
    return key


def tested_target(settings: Settings) -> EvidenceTarget:
    return EvidenceTarget.of(settings.target)


def tested_image(settings: Settings, image: str | None) -> str:
    """The image a test ran in (docker) or emulated: --triton-image, [triton] image, [target]."""
    return image or settings.triton.image or settings.target.image


def new_run(model_dir: Path, environ: Mapping[str, str] | None = None) -> EvidenceRun:
    """This test run: a fresh id, the CI run, and the model folder's commit and dirty state."""
    git = git_info(model_dir)
    environ = os.environ if environ is None else environ
    return EvidenceRun(uuid.uuid4().hex, ci_run_id(environ), git.commit, git.dirty)


def record_of_report(
    kind: TestKind, report: ModelReport, settings: Settings, mode: str, image: str
) -> RecordedTest:
    """What the evidence keeps of one model's test report: outcome, Triton, mode, image, cases."""
    return RecordedTest(
        kind=kind,
        passed=report.passed,
        triton_version=settings.triton.version,
        mode=mode,
        target_image=image or settings.target.image,
        cases=tuple(CaseOutcome(r.case.name, r.passed) for r in report.results),
        error=report.error,
    )


def _model_dir(path: Path, settings: Settings) -> Path:
    return own_folder(ArtifactFiles.parse(path).model, settings.root)


def record_artifact_tests(
    artifacts: Sequence[Path],
    run: RunResult,
    settings: Settings,
    *,
    mode: str | None = None,
    image: str | None = None,
    tested_sha256: Mapping[Path, str] | None = None,
) -> None:
    """Add each artifact's test report in ``run`` to its evidence (matched by source path).
    ``tested_sha256``: each artifact's sha256 before the run; an artifact whose bytes changed
    during the run gets no evidence."""
    chosen = resolve_mode(settings.triton.mode, mode, image)
    shown_image = tested_image(settings, image)
    by_source = {report.source: report for report in run.reports}
    key = signing_key(settings)
    target = tested_target(settings)
    for path in artifacts:
        report = by_source.get(str(path))
        if report is None or not path.is_file():
            continue
        if not (report.passed or evidence_path(path).is_file()):
            continue
        sha256 = file_sha256(path)
        before = (tested_sha256 or {}).get(path, sha256)
        if before != sha256:
            logger.warning(
                "%s: changed while it was tested (sha256 %s before, %s after): no evidence "
                "recorded; test it again",
                path, before[:12], sha256[:12],
            )  # fmt: skip
            continue
        record = record_of_report(ARTIFACT_TEST, report, settings, chosen, shown_image)
        model_dir = _model_dir(path, settings)
        run_record = new_run(model_dir if model_dir.is_dir() else settings.root)
        record_test(path, sha256, record, key, target, run_record)
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
    (:func:`mmetools.testing.artifact_test.run_artifacts`), then record the outcomes as evidence
    (not with ``fixtures_dir`` other than the model's own: those are not the model's cases)."""
    signing_key(settings)  # a bad key (too short, readable by others) stops before any Triton
    before = {path: file_sha256(path) for path in artifacts if path.is_file()}
    run = run_artifacts(
        artifacts,
        settings,
        fixtures_dir=fixtures_dir,
        mode=mode,
        image=image,
        repeat=repeat,
        on_report=on_report,
    )
    own = [
        path
        for path in artifacts
        if fixtures_dir is None
        or _same_folder(fixtures_dir, _model_dir(path, settings) / FIXTURES_DIR)
    ]
    passed = {report.source for report in run.reports if report.passed}
    for path in sorted(set(artifacts) - set(own)):
        if str(path) in passed:
            logger.warning(
                "%s: passed with --fixtures %s, not the model's own fixtures: no evidence "
                "recorded (publish needs a test with the model's fixtures)",
                path, fixtures_dir,
            )  # fmt: skip
    record_artifact_tests(own, run, settings, mode=mode, image=image, tested_sha256=before)
    return run


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
