"""JSON reports: the diff's, the publish's and the load test's results as documents other
tools read.

``mmetools diff --json`` writes :func:`diff_report_json`; ``mmetools publish --json`` writes
:func:`publish_report_json` (``ci/pipeline`` lists the published URIs from it);
``mmetools loadtest`` writes :func:`mmetools.release.loadtest.result_json`. All are indented by 2
and end with a newline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmetools.build.files import StoredFiles
from mmetools.release.diff import DiffReport
from mmetools.release.publish import PublishReport
from mmetools.release.loadtest import LoadTestResult, result_json
from mmetools.rendering.files import write_report


def diff_report_json(report: DiffReport) -> dict[str, Any]:
    previous = None
    if report.previous is not None:
        previous = {
            "role": report.previous.role,
            "artifact": report.previous.artifact_name,
            "uri": report.previous.uri,
        }
    return {
        "model": report.model,
        "candidate": report.candidate,
        "previous": previous,
        "skipped": report.skipped,
        "note": report.note,
        "passed": report.passed,
        "cases": report.cases,
        "thresholds": report.thresholds_source,
        "errors": list(report.errors),
        "candidate_version": report.candidate_version,
        "candidate_identity": report.candidate_identity,
        "previous_sha256": report.previous_sha256,
        "outputs_added": list(report.added),
        "outputs_removed": list(report.removed),
        "outputs_renamed": [list(pair) for pair in report.renamed],
        "accepted": report.accepted,
        "acceptance": (
            None
            if report.acceptance is None
            else {
                "path": report.acceptance.path,
                "matched": report.acceptance.matched,
                "reasons": list(report.acceptance.reasons),
            }
        ),
        "outputs": [
            {
                "output": o.output,
                "kind": o.kind,
                "elements": o.elements,
                "max_abs": o.max_abs,
                "max_rel": o.max_rel,
                "beyond": o.beyond,
                "beyond_share": o.beyond_share,
                "flip_count": len(o.flips),
                "flip_rate": o.flip_rate,
                "flips": [f.__dict__ for f in o.flips],
                "summary": dict(o.summary),
                "violations": list(o.violations),
            }
            for o in report.outputs
        ],
    }


def write_diff_json(report: DiffReport, path: Path) -> None:
    """``mmetools diff --json``: the report at ``path`` (written atomically, folders created)."""
    write_report(path, _document(diff_report_json(report)), "JSON report")


def publish_report_json(report: PublishReport, branch: str, dry_run: bool) -> dict[str, Any]:
    """Every destination's outcome; ``objects`` are the URIs of the artifact and its sidecars
    (what a staging or production endpoint reads)."""
    return {
        "branch": branch,
        "dry_run": dry_run,
        "ok": report.ok,
        "results": [
            {
                "artifact": r.artifact,
                "role": r.role,
                "action": r.action,
                "uri": r.destination,
                "objects": [r.destination, *StoredFiles(r.destination).sidecars],
                "sha256": r.sha256,
                "size": r.size,
                "seconds": r.seconds,
                "detail": r.detail,
            }
            for r in report.results
        ],
        "failures": [
            {"artifact": f.artifact, "role": f.role, "uri": f.destination, "message": f.message}
            for f in report.failures
        ],
    }


def write_publish_json(report: PublishReport, branch: str, dry_run: bool, path: Path) -> None:
    """``mmetools publish --json``: the report at ``path`` (written atomically, folders created)."""
    write_report(path, _document(publish_report_json(report, branch, dry_run)), "JSON report")


def write_loadtest_json(result: LoadTestResult, path: Path) -> None:
    """``<out>/<model>.loadtest.json`` (written atomically, folders created)."""
    write_report(path, _document(result_json(result)), "JSON report")


def _document(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()
