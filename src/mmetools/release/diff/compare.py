"""Comparing one output of two versions over every input (pure: arrays in, values out).

Float outputs get max abs/rel difference and the share of elements beyond
``atol + rtol * |previous|``; label outputs (BYTES, integers, BOOL) get the flip rate and every
flip listed. :class:`DiffReport` gathers every output's :class:`OutputDiff` for one model.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.model.cases import FLOAT_DATATYPES
from mmetools.release.diff.thresholds import OutputThresholds
from mmetools.release.published import PublishedVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Flip:
    case: str
    index: int  # flat element index in the output tensor
    previous: str
    candidate: str


@dataclass(frozen=True)
class OutputDiff:
    """How one output changed over every input."""

    output: str
    kind: str  # "float" or "label"
    elements: int
    thresholds: OutputThresholds
    max_abs: float = 0.0
    max_rel: float = 0.0
    beyond: int = 0  # float elements beyond atol + rtol * |previous|
    flips: tuple[Flip, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # shape or datatype changes

    @property
    def beyond_share(self) -> float:
        return self.beyond / self.elements if self.elements else 0.0

    @property
    def flip_rate(self) -> float:
        return len(self.flips) / self.elements if self.elements else 0.0

    @property
    def violations(self) -> tuple[str, ...]:
        found = list(self.problems)
        if self.kind == "float" and self.beyond_share > self.thresholds.max_beyond_share:
            found.append(
                f"{self.output}: {self.beyond} of {self.elements} elements "
                f"({self.beyond_share:.2%}) differ beyond atol {self.thresholds.atol:g} + rtol "
                f"{self.thresholds.rtol:g} (allowed {self.thresholds.max_beyond_share:.2%}); "
                f"max abs difference {self.max_abs:.3g}"
            )
        if self.kind == "label" and self.flip_rate > self.thresholds.max_flip_rate:
            found.append(
                f"{self.output}: {len(self.flips)} of {self.elements} labels flipped "
                f"({self.flip_rate:.2%}, allowed {self.thresholds.max_flip_rate:.2%})"
            )
        return tuple(found)

    @property
    def passed(self) -> bool:
        return not self.violations


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value.item() if hasattr(value, "item") else value)


def compare_output(
    output: str,
    datatype: str,
    pairs: Sequence[tuple[str, npt.NDArray[Any], npt.NDArray[Any]]],
    thresholds: OutputThresholds,
) -> OutputDiff:
    """Compare one output over every case: ``pairs`` is (case, previous, candidate)."""
    kind = "float" if datatype in FLOAT_DATATYPES else "label"
    problems: list[str] = []
    elements = 0
    max_abs = max_rel = 0.0
    beyond = 0
    flips: list[Flip] = []
    abs_diffs: list[npt.NDArray[np.float64]] = []
    previous_values: list[npt.NDArray[Any]] = []
    candidate_values: list[npt.NDArray[Any]] = []
    for case, previous, candidate in pairs:
        previous, candidate = np.asarray(previous), np.asarray(candidate)
        if previous.shape != candidate.shape:
            problems.append(
                f"{output}: case '{case}': shape {list(previous.shape)} became "
                f"{list(candidate.shape)}"
            )
            continue
        elements += previous.size
        if kind == "float":
            a, b = previous.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
            difference = np.abs(b - a)
            nan_mismatch = np.isnan(a) != np.isnan(b)
            difference = np.where(np.isnan(a) & np.isnan(b), 0.0, difference)
            difference = np.where(nan_mismatch, np.inf, difference)
            abs_diffs.append(difference)
            previous_values.append(a)
            candidate_values.append(b)
            if difference.size:
                max_abs = max(max_abs, float(difference.max()))
                nonzero = a != 0
                if nonzero.any():
                    max_rel = max(max_rel, float((difference[nonzero] / np.abs(a[nonzero])).max()))
                allowed = thresholds.atol + thresholds.rtol * np.abs(np.nan_to_num(a))
                beyond += int(np.count_nonzero(difference > allowed))
        else:
            a_items, b_items = previous.ravel().tolist(), candidate.ravel().tolist()
            previous_values.append(np.array([_text(v) for v in a_items], dtype=object))
            candidate_values.append(np.array([_text(v) for v in b_items], dtype=object))
            for index, (x, y) in enumerate(zip(a_items, b_items)):
                if x != y:
                    flips.append(Flip(case, index, _text(x), _text(y)))
    if not pairs:
        problems.append(f"{output}: not compared: no input was answered by both versions")
    summary: dict[str, Any] = {}
    if kind == "float" and abs_diffs:
        diffs = np.concatenate(abs_diffs)
        finite = diffs[np.isfinite(diffs)]
        before, after = np.concatenate(previous_values), np.concatenate(candidate_values)
        summary = {
            "previous_mean": float(np.nanmean(before)) if before.size else 0.0,
            "candidate_mean": float(np.nanmean(after)) if after.size else 0.0,
            "abs_diff_mean": float(finite.mean()) if finite.size else 0.0,
            "abs_diff_p50": float(np.percentile(finite, 50)) if finite.size else 0.0,
            "abs_diff_p99": float(np.percentile(finite, 99)) if finite.size else 0.0,
        }
    elif kind == "label" and previous_values:
        summary = {
            "previous_counts": dict(
                sorted(Counter(np.concatenate(previous_values).tolist()).items())
            ),
            "candidate_counts": dict(
                sorted(Counter(np.concatenate(candidate_values).tolist()).items())
            ),
        }
    return OutputDiff(
        output,
        kind,
        elements,
        thresholds,
        max_abs,
        max_rel,
        beyond,
        tuple(flips),
        summary,
        tuple(problems),
    )


@dataclass(frozen=True)
class AcceptanceCheck:
    """A recorded acceptance (``diff-acceptance.toml``) against this diff: it holds only when
    every figure matches (:mod:`.acceptance`)."""

    path: str
    matched: bool
    reasons: tuple[str, ...] = ()  # why it does not match


@dataclass(frozen=True)
class DiffReport:
    model: str
    candidate: str  # the candidate's folder or tarball
    previous: PublishedVersion | None
    cases: int = 0
    outputs: tuple[OutputDiff, ...] = ()
    errors: tuple[str, ...] = ()  # inputs that failed on one side, load failures
    thresholds_source: str = "defaults"
    note: str = ""
    model_dir: str = ""  # the model folder as given, e.g. models/screen_detector
    candidate_version: int = 0
    candidate_identity: str = ""  # build/identity.py: the model's own files
    previous_sha256: str = ""
    added: tuple[str, ...] = ()  # outputs only the candidate has
    removed: tuple[str, ...] = ()  # outputs only the previous version has
    renamed: tuple[tuple[str, str], ...] = ()  # (previous name, candidate name), compared
    acceptance: AcceptanceCheck | None = None

    @property
    def skipped(self) -> bool:
        return self.previous is None

    @property
    def interface_changes(self) -> tuple[str, ...]:
        """Outputs clients read that changed name or went away (a change to review)."""
        return (
            *(
                f"output '{name}' of the previous version is gone (clients reading it break)"
                for name in self.removed
            ),
            *(
                f"output '{old}' was renamed '{new}' (compared as one output; clients reading "
                f"'{old}' break)"
                for old, new in self.renamed
            ),
        )

    @property
    def changes(self) -> tuple[str, ...]:
        """What differs beyond the thresholds: what a reviewer may accept."""
        return (*self.interface_changes, *(v for o in self.outputs for v in o.violations))

    @property
    def accepted(self) -> bool:
        """Over the thresholds, but exactly the change a reviewer accepted."""
        return (
            bool(self.changes)
            and not self.errors
            and self.acceptance is not None
            and self.acceptance.matched
        )

    @property
    def passed(self) -> bool:
        return not self.errors and (not self.changes or self.accepted)

    @property
    def violations(self) -> tuple[str, ...]:
        return (*self.errors, *self.changes)
