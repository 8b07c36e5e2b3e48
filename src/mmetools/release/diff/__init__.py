"""``mmetools diff``: the candidate's predictions against the published previous version's.

Both run on one Triton through the SageMaker MME emulation (:mod:`mmetools.testing.artifact_test`):
the previous version's tarball is fetched from its destination and unpacked as SageMaker does, the
candidate is a tarball or a model folder (staged as the tarball's members). Every input is sent
to both: the fixtures' inputs, plus an optional dataset (:mod:`.dataset`).

Per output: float outputs get max abs/rel difference and the share of elements beyond
``atol + rtol * |previous|``; label outputs (BYTES, integers, BOOL) get the flip rate and every
flip listed (:mod:`.compare`). Thresholds come from ``models/<name>/regression.toml``
(:mod:`.thresholds`); running both versions is :mod:`.run`. The reports (Markdown, JUnit XML,
JSON) are drawn by :mod:`mmetools.rendering`.

Only the CLI and the pipeline import this package.
"""

from __future__ import annotations

from mmetools.release.diff.compare import DiffReport, Flip, OutputDiff, compare_output
from mmetools.release.diff.dataset import load_dataset
from mmetools.release.diff.run import Progress, compare_versions, diff_against_published
from mmetools.release.diff.thresholds import (
    REGRESSION_FILE,
    OutputThresholds,
    Thresholds,
    load_thresholds,
)

__all__ = [
    "REGRESSION_FILE",
    "DiffReport",
    "Flip",
    "OutputDiff",
    "OutputThresholds",
    "Progress",
    "Thresholds",
    "compare_output",
    "compare_versions",
    "diff_against_published",
    "load_dataset",
    "load_thresholds",
]
