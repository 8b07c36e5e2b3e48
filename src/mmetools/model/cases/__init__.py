"""Fixture cases of a model: named inputs and expected outputs with per-output tolerances.

One JSON file per case in ``models/<name>/tests/fixtures/<case>.json``::

    {
      "description": "photo of a laptop screen",
      "inputs": {"IMAGE": {"datatype": "BYTES", "shape": [1, 1], "files": ["screen_01.png"]}},
      "expected": {
        "LABEL": {"datatype": "BYTES", "shape": [1, 1], "data": ["screen"]},
        "PROBABILITY": {"datatype": "FP32", "shape": [1, 1], "data": [0.973],
                        "atol": 1e-4, "rtol": 1e-3}
      }
    }

Tensor names are the ensemble's input/output names, datatypes are KServe names (FP32, INT64,
BYTES, ...), shapes include the batch dimension when the ensemble's max_batch_size > 0, ``data``
is the flat row-major list (strings for BYTES). A BYTES input may give ``files`` instead: paths
relative to the fixture file, read as raw bytes. Floats compare with |a-e| <= atol + rtol*|e|
(defaults below); NaN equals NaN; ints and BYTES compare exactly.

Expected values are produced by ``mmetools fixtures regen`` with the in-process reference runner
(:mod:`mmetools.model.reference`), never by Triton; :func:`update_expected` and :func:`write_fixture`
rewrite a file keeping the user's description, inputs and tolerances.

Modules: ``values`` (datatypes, cases, results, the ensemble signature), ``loading`` (reading and
checking fixture files), ``compare`` (outputs against expected values), ``writing`` (updating and
formatting fixture files). This package re-exports what the rest of mmetools uses.
"""

from __future__ import annotations

from mmetools.model.cases.compare import compare_case, compare_output, regen_hint
from mmetools.model.cases.loading import (
    fixture_paths,
    load_case,
    load_fixtures,
    parse_case,
    parse_input_case,
    read_fixture_document,
)
from mmetools.model.cases.values import (
    CaseResult,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    EnsembleSignature,
    Expected,
    FIXTURE_SUFFIX,
    FLOAT_DATATYPES,
    FixtureCase,
    datatype_of_array,
    kserve_datatype,
)
from mmetools.model.cases.writing import format_fixture, json_values, update_expected, write_fixture

__all__ = [
    "CaseResult",
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "EnsembleSignature",
    "Expected",
    "FIXTURE_SUFFIX",
    "FLOAT_DATATYPES",
    "FixtureCase",
    "compare_case",
    "compare_output",
    "datatype_of_array",
    "fixture_paths",
    "format_fixture",
    "json_values",
    "kserve_datatype",
    "load_case",
    "load_fixtures",
    "parse_case",
    "parse_input_case",
    "read_fixture_document",
    "regen_hint",
    "update_expected",
    "write_fixture",
]
