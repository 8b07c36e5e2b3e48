"""``<name>_<version>.evidence.json``: the tests one exact artifact (by sha256) passed.

``mmetools build`` writes it after the source folder's Triton test and the artifact's SageMaker
MME test both passed; ``mmetools test --artifact`` writes or refreshes its artifact part. Publish
refuses an artifact whose evidence is missing, failing or for other bytes (``require_passing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from mmetools.build.files import LocalFiles
from mmetools.core.atomic import write_text_atomically
from mmetools.core.jsontext import parse_json
from mmetools.core.errors import PublishError

EVIDENCE_FORMAT = 1
SOURCE_TEST: Final = "source"  # the model folder on Triton (KServe HTTP), before packaging
ARTIFACT_TEST: Final = "mme_artifact"  # the tarball through Triton's SageMaker MME frontend

TestKind = Literal["source", "mme_artifact"]


@dataclass(frozen=True)
class CaseOutcome:
    name: str
    passed: bool

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed}


@dataclass(frozen=True)
class RecordedTest:
    """One test run of the model: which kind, on which Triton, with which fixture cases."""

    kind: TestKind
    passed: bool
    triton_version: str
    mode: str
    target_image: str
    cases: tuple[CaseOutcome, ...]
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "passed": self.passed,
            "triton_version": self.triton_version,
            "mode": self.mode,
            "target_image": self.target_image,
            "cases": [case.as_json() for case in self.cases],
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Any) -> RecordedTest:
        return cls(
            kind=data["kind"],
            passed=bool(data["passed"]),
            triton_version=str(data["triton_version"]),
            mode=str(data["mode"]),
            target_image=str(data["target_image"]),
            cases=tuple(CaseOutcome(str(c["name"]), bool(c["passed"])) for c in data["cases"]),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class Evidence:
    artifact: str
    sha256: str
    tests: tuple[RecordedTest, ...]

    def test(self, kind: TestKind) -> RecordedTest | None:
        return next((t for t in self.tests if t.kind == kind), None)

    def with_test(self, record: RecordedTest) -> Evidence:
        others = tuple(t for t in self.tests if t.kind != record.kind)
        return Evidence(self.artifact, self.sha256, tuple(sorted((*others, record), key=_order)))

    def as_json(self) -> dict[str, Any]:
        return {
            "format": EVIDENCE_FORMAT,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "tests": [t.as_json() for t in self.tests],
        }


def _order(record: RecordedTest) -> int:
    return 0 if record.kind == SOURCE_TEST else 1


def evidence_path(artifact: Path) -> Path:
    """The evidence beside the tarball ``artifact`` (build/files.py names it)."""
    return LocalFiles(artifact).evidence


def read_evidence(path: Path) -> Evidence | None:
    """The evidence in ``path``; None when it is missing or not evidence this mmetools wrote."""
    try:
        data = parse_json(path.read_bytes())
        if data["format"] != EVIDENCE_FORMAT:
            return None
        tests = tuple(RecordedTest.from_json(t) for t in data["tests"])
        return Evidence(str(data["artifact"]), str(data["sha256"]), tests)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_evidence(path: Path, evidence: Evidence) -> None:
    write_text_atomically(path, json.dumps(evidence.as_json(), indent=2) + "\n")


def record_test(artifact: Path, sha256: str, record: RecordedTest) -> Evidence:
    """Add ``record`` to the artifact's evidence (evidence for other bytes is discarded)."""
    path = evidence_path(artifact)
    existing = read_evidence(path)
    if existing is None or existing.sha256 != sha256:
        existing = Evidence(artifact.name, sha256, ())
    evidence = existing.with_test(record)
    write_evidence(path, evidence)
    return evidence


def require_passing(artifact: Path, sha256: str) -> Evidence:
    """The artifact's evidence if its MME artifact test passed for exactly ``sha256``; else
    PublishError saying what to run. Nothing is read but the sidecar."""
    path = evidence_path(artifact)
    rerun = (
        f"run `mmetools test --artifact {artifact}` (or build it with `mmetools build`) "
        "and publish after it passes"
    )
    evidence = read_evidence(path)
    if evidence is None:
        state = "is missing" if not path.exists() else "is not readable evidence"
        raise PublishError(
            f"{artifact}: refusing to publish: {path.name} {state}, so nothing shows these "
            f"bytes passed their tests; {rerun}"
        )
    if evidence.sha256 != sha256:
        raise PublishError(
            f"{artifact}: refusing to publish: {path.name} is for sha256 {evidence.sha256[:12]}, "
            f"not for these bytes ({sha256[:12]}): the artifact changed after it was tested; "
            f"{rerun}"
        )
    mme = evidence.test(ARTIFACT_TEST)
    if mme is None:
        raise PublishError(
            f"{artifact}: refusing to publish: {path.name} has no SageMaker MME artifact test; "
            f"{rerun}"
        )
    failed = [t.kind for t in evidence.tests if not t.passed]
    if failed:
        raise PublishError(
            f"{artifact}: refusing to publish: its {' and '.join(failed)} test failed "
            f"(see {path.name}); fix the model, then {rerun}"
        )
    return evidence
