"""Publish ``dist/<name>_<version>.tar.gz`` artifacts to staging and, from the production branch,
to production.

  branches.py   exact branch names (ref-looking ones refused) as staging folders; production
  plan.py       destinations, one PublishTarget per place, options and results
  step.py       one artifact to one target: no-op, refusal, copy or write, with retries
  run.py        publish(): every check first, then every artifact's steps
  gate.py       the evidence gate: signed, these bytes, this target, this model folder (--retest)

The local artifact and its verification (``load_local_artifact``) live in build/verified.py;
the stores in release/storage/.
"""

from __future__ import annotations

from mmetools.build.verified import load_local_artifact, remember_verified
from mmetools.release.publish.branches import branch_from_slug, branch_slug, is_production_branch
from mmetools.release.publish.plan import (
    PublishFailure,
    PublishOptions,
    PublishReport,
    PublishResult,
    PublishTarget,
    destinations,
    plan_targets,
)
from mmetools.release.publish.run import ProgressHook, publish
from mmetools.release.publish.step import explain_difference

__all__ = [
    "ProgressHook",
    "PublishFailure",
    "PublishOptions",
    "PublishReport",
    "PublishResult",
    "PublishTarget",
    "branch_from_slug",
    "branch_slug",
    "destinations",
    "explain_difference",
    "is_production_branch",
    "load_local_artifact",
    "remember_verified",
    "plan_targets",
    "publish",
]
