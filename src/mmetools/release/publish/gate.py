"""The evidence gate of ``publish()``: only bytes a test run of this key holder passed, for the
serving target of these settings, built from the model folder as it is now.

- ``require_evidence``: every artifact's evidence verifies (release/evidence.py,
  ``require_passing``) with the key this process holds (release/evidence_key.py); with
  ``--retest``, an artifact whose evidence does not is tested again (the SageMaker MME artifact
  test, on exactly these bytes) and its fresh evidence is required instead;
- ``require_tested_here``: the evidence's run tested the model folder at the commit being
  published, or at a commit whose model folder is the same as now (an earlier build left in
  ``dist/`` is not published under a later commit's provenance).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmetools.build.verified import LocalArtifact
from mmetools.core.errors import EvidenceError
from mmetools.core.settings import Settings
from mmetools.release.evidence import Evidence, require_passing
from mmetools.release.evidence_key import load_evidence_key
from mmetools.release.provenance import UNKNOWN, changed_since

logger = logging.getLogger(__name__)


def require_evidence(
    verified: Sequence[LocalArtifact],
    settings: Settings,
    *,
    retest: bool = False,
) -> list[Evidence]:
    """Each artifact's passing evidence (EvidenceError for the first that has none). The key is
    this process's (MMETOOLS_EVIDENCE_KEY of its environment, or the user's key file)."""
    target = settings.target
    key = load_evidence_key(settings.cache_dir, create=False)
    refused: list[LocalArtifact] = []
    for local in verified:
        try:
            require_passing(local.path, local.sha256, key, target)
        except EvidenceError as e:
            if not retest:
                raise
            logger.warning("%s; --retest: testing these bytes again", e)
            refused.append(local)
    if refused:
        from mmetools.release.evidence_recording import run_and_record_artifact_tests

        run_and_record_artifact_tests([local.path for local in refused], settings)
        key = load_evidence_key(settings.cache_dir, create=False)
    return [require_passing(local.path, local.sha256, key, target) for local in verified]


def require_tested_here(
    artifact: Path, evidence: Evidence, model_dir: Path, record: Mapping[str, Any]
) -> dict[str, Any]:
    """What the published provenance says of the test run; EvidenceError when the evidence's
    run tested another state of the model folder than the one being published."""
    tested = evidence.run
    commit = str(record.get("git", {}).get("commit", UNKNOWN))
    shown = {"run_id": tested.id, "ci_run_id": tested.ci_run_id, "commit": tested.commit,
             "dirty": tested.dirty}  # fmt: skip
    if UNKNOWN in (commit, tested.commit) or tested.commit == commit:
        return shown
    if tested.dirty:
        why = "with uncommitted changes in the model folder"
    elif changed_since(model_dir, tested.commit):
        why = "and the model folder changed since"
    else:
        return shown
    raise EvidenceError(
        f"{artifact}: refusing to publish: its evidence is from a test run at commit "
        f"{tested.commit[:12]} {why}, but the checkout is at {commit[:12]}: these are not the "
        "bytes this commit builds (an earlier build left in the output folder?); build it again "
        "with `mmetools build` and publish that"
    )


__all__ = ["require_evidence", "require_tested_here"]
