"""The validator agrees with the real Triton: every generated repository gets the same verdict
from `mmetools validate` as from loading it in the bundled server (see validation/differential.py).

Rerun and print the table: ``pytest tests/integration/model/validation/test_differential.py -m integration -s``;
the larger corpus of combinations: add ``-m large_corpus``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmetools.model.validation import validate_repository
from support.model import differential
from support.model.triton_seam import TritonServer


@pytest.fixture(scope="module")
def server() -> Iterator[TritonServer]:
    with TritonServer() as running:
        yield running


def _run(
    server: TritonServer, cases: list[differential.Case], tmp_path: Path
) -> list[differential.Outcome]:
    outcomes = differential.run_cases(server, cases, tmp_path)
    lines = list(differential.report(outcomes))
    print("\n" + "\n".join(lines))
    return outcomes


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_default_corpus_agrees_with_triton(server: TritonServer, tmp_path: Path) -> None:
    cases = differential.default_cases()
    outcomes = _run(server, cases, tmp_path)
    assert len(outcomes) == len(cases) > 0
    assert any(o.triton_accepts for o in outcomes) and any(not o.triton_accepts for o in outcomes)
    unexpected = [differential.outcome_line(o) for o in outcomes if not o.expected]
    assert unexpected == [], differential.agreement_line(outcomes)
    # The comparison has teeth: a validator that lost its shape rule disagrees with Triton.
    without_shapes = 0
    for outcome in outcomes:
        kept = [
            p
            for p in validate_repository(tmp_path / outcome.case.id)
            if p.is_error and "shape" not in p.message
        ]
        without_shapes += (not kept) != outcome.triton_accepts
    assert without_shapes > 0


@pytest.mark.integration
@pytest.mark.large_corpus
@pytest.mark.timeout(3600)
def test_large_corpus_agrees_with_triton(server: TritonServer, tmp_path: Path) -> None:
    cases = differential.large_cases()
    outcomes = _run(server, cases, tmp_path)
    assert len(outcomes) == len(cases) > 0
    unexpected = [differential.outcome_line(o) for o in outcomes if not o.expected]
    assert unexpected == [], differential.agreement_line(outcomes)
