"""``<name>_<version>.evidence.json``: the tests one exact artifact (by sha256) passed, for which
serving target, in which run, signed by the process that ran them.

``mmetools build`` writes it after the source folder's Triton test and the artifact's SageMaker
MME test both passed; ``mmetools test --artifact`` writes or refreshes its artifact part. Both
sign it with the evidence key (release/evidence_key.py): an HMAC-SHA256 over its canonical JSON.
Publish refuses an artifact whose evidence is missing, not signed with the key it holds, for other
bytes or another target, or failing (``require_passing``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

from mmetools.build.files import LocalFiles
from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import EvidenceError
from mmetools.core.jsontext import parse_json
from mmetools.core.targets import ServingTarget
from mmetools.release.evidence_key import ALGORITHM, EvidenceKey

EVIDENCE_FORMAT = 2  # 2: signed, with target and run (format 1 was neither)
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
    triton_version: str  # the Triton that ran the test (the bundled server's in bundled mode)
    mode: str
    target_image: str  # the image whose server ran it (docker) or that it emulated
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
        if data["kind"] not in (SOURCE_TEST, ARTIFACT_TEST):
            raise ValueError(f"unknown test kind {data['kind']!r}")
        return cls(
            kind=data["kind"],
            passed=data["passed"] is True,
            triton_version=str(data["triton_version"]),
            mode=str(data["mode"]),
            target_image=str(data["target_image"]),
            cases=tuple(CaseOutcome(str(c["name"]), c["passed"] is True) for c in data["cases"]),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class EvidenceTarget:
    """The serving target the artifact was audited and tested for ([target] in mmetools.toml)."""

    image: str
    triton_version: str
    python_version: str

    @classmethod
    def of(cls, target: ServingTarget) -> EvidenceTarget:
        return cls(target.image, target.triton_version, target.python_version)

    def as_json(self) -> dict[str, str]:
        return {
            "image": self.image,
            "triton_version": self.triton_version,
            "python_version": self.python_version,
        }

    def describe(self) -> str:
        return f"{self.image} (Triton {self.triton_version}, Python {self.python_version})"


@dataclass(frozen=True)
class EvidenceRun:
    """The run that wrote the evidence: a fresh id, the CI run, and the commit of the model
    folder it tested (``dirty``: uncommitted changes in that folder; None outside git)."""

    id: str
    ci_run_id: str | None
    commit: str
    dirty: bool | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ci_run_id": self.ci_run_id,
            "commit": self.commit,
            "dirty": self.dirty,
        }

    @classmethod
    def from_json(cls, data: Any) -> EvidenceRun:
        dirty = data["dirty"]
        return cls(
            str(data["id"]),
            None if data["ci_run_id"] is None else str(data["ci_run_id"]),
            str(data["commit"]),
            None if dirty is None else dirty is True,
        )


@dataclass(frozen=True)
class Signature:
    key_id: str
    value: str

    def as_json(self) -> dict[str, str]:
        return {"algorithm": ALGORITHM, "key_id": self.key_id, "value": self.value}


@dataclass(frozen=True)
class Evidence:
    artifact: str
    sha256: str
    tests: tuple[RecordedTest, ...]
    target: EvidenceTarget
    run: EvidenceRun
    signature: Signature | None = None

    def test(self, kind: TestKind) -> RecordedTest | None:
        return next((t for t in self.tests if t.kind == kind), None)

    def with_test(self, record: RecordedTest, run: EvidenceRun) -> Evidence:
        others = tuple(t for t in self.tests if t.kind != record.kind)
        tests = tuple(sorted((*others, record), key=_order))
        return replace(self, tests=tests, run=run, signature=None)

    def content(self) -> bytes:
        """The canonical bytes the signature covers: everything but the signature itself."""
        return json.dumps(
            self.as_json(signed=False), sort_keys=True, separators=(",", ":")
        ).encode()

    def signed(self, key: EvidenceKey) -> Evidence:
        unsigned = replace(self, signature=None)
        return replace(self, signature=Signature(key.key_id, key.sign(unsigned.content())))

    def verifies(self, key: EvidenceKey) -> bool:
        sig = self.signature
        return (
            sig is not None and sig.key_id == key.key_id and key.verifies(self.content(), sig.value)
        )

    def as_json(self, signed: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": EVIDENCE_FORMAT,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "target": self.target.as_json(),
            "run": self.run.as_json(),
            "tests": [t.as_json() for t in self.tests],
        }
        if signed and self.signature is not None:
            data["signature"] = self.signature.as_json()
        return data


def _order(record: RecordedTest) -> int:
    return 0 if record.kind == SOURCE_TEST else 1


def evidence_path(artifact: Path) -> Path:
    """The evidence beside the tarball ``artifact`` (build/files.py names it)."""
    return LocalFiles(artifact).evidence


def _parse(data: Any) -> Evidence:
    target = data["target"]
    signature = data.get("signature")
    if signature is not None and signature["algorithm"] != ALGORITHM:
        raise ValueError(f"unknown signature algorithm {signature['algorithm']!r}")
    return Evidence(
        artifact=str(data["artifact"]),
        sha256=str(data["sha256"]),
        tests=tuple(RecordedTest.from_json(t) for t in data["tests"]),
        target=EvidenceTarget(
            str(target["image"]), str(target["triton_version"]), str(target["python_version"])
        ),
        run=EvidenceRun.from_json(data["run"]),
        signature=None if signature is None else Signature(signature["key_id"], signature["value"]),
    )


def load_evidence(path: Path) -> tuple[Evidence | None, str]:
    """The evidence in ``path``, or None and why not ("is missing", "is not readable evidence",
    "was written by an mmetools before evidence was signed")."""
    try:
        data = parse_json(path.read_bytes())
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, ValueError) as e:
        return None, f"is not readable evidence ({e})"
    try:
        if data["format"] != EVIDENCE_FORMAT:
            return None, (
                f"is evidence format {data['format']!r} (this mmetools writes {EVIDENCE_FORMAT}: "
                "signed, with the target), written by an older mmetools or by hand"
            )
        return _parse(data), ""
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        return None, f"is not readable evidence (field {e})"


def read_evidence(path: Path) -> Evidence | None:
    """The evidence in ``path``; None when it is missing or not evidence this mmetools wrote."""
    return load_evidence(path)[0]


def write_evidence(path: Path, evidence: Evidence, key: EvidenceKey) -> Evidence:
    """Sign ``evidence`` with ``key`` and write it (atomically); returns the signed value."""
    signed = evidence.signed(key)
    write_text_atomically(path, json.dumps(signed.as_json(), indent=2) + "\n")
    return signed


def record_test(
    artifact: Path,
    sha256: str,
    record: RecordedTest,
    key: EvidenceKey,
    target: EvidenceTarget,
    run: EvidenceRun,
) -> Evidence:
    """Add ``record`` to the artifact's evidence. Earlier records are kept only from evidence
    for these bytes and this target that ``key`` signed: a hand-written or foreign "passed" is
    never carried into signed evidence."""
    path = evidence_path(artifact)
    existing = read_evidence(path)
    if (
        existing is None
        or existing.sha256 != sha256
        or existing.target != target
        or not existing.verifies(key)
    ):
        existing = Evidence(artifact.name, sha256, (), target, run)
    return write_evidence(path, existing.with_test(record, run), key)


def require_passing(
    artifact: Path, sha256: str, key: EvidenceKey | None, target: ServingTarget
) -> Evidence:
    """The artifact's evidence if it is signed with ``key``, for exactly ``sha256`` and
    ``target``, and its MME artifact test passed; else EvidenceError naming the evidence file
    and saying what to run. Nothing is read but the sidecar."""
    path = evidence_path(artifact)
    rerun = (
        f"run `mmetools test --artifact {artifact}` (or build it with `mmetools build`), or "
        "publish with --retest"
    )

    def refuse(why: str) -> EvidenceError:
        return EvidenceError(f"{artifact}: refusing to publish: {path} {why}; {rerun}")

    evidence, reason = load_evidence(path)
    if evidence is None:
        raise refuse(f"{reason}, so nothing shows these bytes passed their tests")
    if evidence.sha256 != sha256:
        raise refuse(
            f"is for sha256 {evidence.sha256[:12]}, not for these bytes ({sha256[:12]}): the "
            "artifact changed after it was tested"
        )
    _require_signed_by(evidence, key, refuse)
    expected = EvidenceTarget.of(target)
    if evidence.target != expected:
        raise refuse(
            f"shows a test for the target {evidence.target.describe()}, but the serving target "
            f"is {expected.describe()} ([target] in mmetools.toml or MMETOOLS_TARGET_IMAGE)"
        )
    if evidence.test(ARTIFACT_TEST) is None:
        raise refuse("has no SageMaker MME artifact test")
    failed = [t.kind for t in evidence.tests if not t.passed]
    if failed:
        raise refuse(f"shows that its {' and '.join(failed)} test failed (fix the model first)")
    return evidence


def _require_signed_by(
    evidence: Evidence, key: EvidenceKey | None, refuse: Callable[[str], EvidenceError]
) -> None:
    signature = evidence.signature
    if signature is None:
        raise refuse("is not signed, so no test run of mmetools wrote it (hand-written?)")
    if key is None:
        raise refuse(
            "is signed, but this machine holds no evidence key (no MMETOOLS_EVIDENCE_KEY, no key "
            "file in the cache): it was not tested here"
        )
    if signature.key_id != key.key_id:
        raise refuse(
            f"is signed with another key (key id {signature.key_id}; this process holds "
            f"{key.key_id} from {key.source}): it was tested on another machine or in another "
            "CI setup"
        )
    if not evidence.verifies(key):
        raise refuse("does not match its signature: it was edited after the test wrote it")


__all__ = [
    "ARTIFACT_TEST",
    "EVIDENCE_FORMAT",
    "SOURCE_TEST",
    "CaseOutcome",
    "Evidence",
    "RecordedTest",
    "Signature",
    "TestKind",
    "EvidenceRun",
    "EvidenceTarget",
    "evidence_path",
    "load_evidence",
    "read_evidence",
    "record_test",
    "require_passing",
    "write_evidence",
]
