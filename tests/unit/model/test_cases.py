"""Fixture files: loading, validation against the ensemble config, comparison, writing back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmetools.core.errors import FixtureError
from mmetools.model.cases import (
    CaseResult,
    Expected,
    FixtureCase,
    compare_case,
    compare_output,
    format_fixture,
    json_values,
    kserve_datatype,
    load_fixtures,
    read_fixture_document,
    update_expected,
    write_fixture,
)
from mmetools.model.config import DataType
from mmetools.model.folder import ModelFolder

ENSEMBLE_CONFIG = """
name: "demo_pipeline"
platform: "ensemble"
max_batch_size: %(max_batch_size)d
input [
  { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SCALE" data_type: TYPE_FP32 dims: [ -1 ] }
]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "PROBABILITY" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "COUNT" data_type: TYPE_INT64 dims: [ 2 ] }
]
ensemble_scheduling { step [ { model_name: "x" model_version: -1
  input_map { key: "A" value: "IMAGE" } output_map { key: "B" value: "LABEL" } } ] }
"""


def valid_case() -> dict[str, Any]:
    return {
        "description": "a screen",
        "inputs": {
            "IMAGE": {"datatype": "BYTES", "shape": [1, 1], "files": ["screen.png"]},
            "SCALE": {"datatype": "FP32", "shape": [1, 3], "data": [0.5, 1, 2.25]},
        },
        "expected": {
            "LABEL": {"datatype": "BYTES", "shape": [1, 1], "data": ["screen"]},
            "PROBABILITY": {
                "datatype": "FP32",
                "shape": [1, 1],
                "data": [0.973],
                "atol": 1e-4,
                "rtol": 1e-3,
            },
        },
    }


def make_model(tmp_path: Path, max_batch_size: int = 8) -> ModelFolder:
    folder = tmp_path / "demo"
    (folder / "demo_pipeline").mkdir(parents=True)
    (folder / "demo_pipeline" / "config.pbtxt").write_text(
        ENSEMBLE_CONFIG % {"max_batch_size": max_batch_size}
    )
    (folder / "model_version.txt").write_text("1\n")
    fixtures = folder / "tests" / "fixtures"
    fixtures.mkdir(parents=True)
    (fixtures / "screen.png").write_bytes(b"\x89PNG raw bytes")
    return ModelFolder(folder)


def write_case(model: ModelFolder, name: str, document: Any) -> Path:
    path = model.fixtures_dir / f"{name}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path


def load_error(tmp_path: Path, document: Any, max_batch_size: int = 8) -> tuple[str, Path]:
    model = make_model(tmp_path, max_batch_size)
    path = write_case(model, "case", document)
    with pytest.raises(FixtureError) as info:
        load_fixtures(model)
    return str(info.value), path


# ---------------------------------------------------------------------------------- loading


def test_load_fixtures_reads_cases_sorted_with_arrays(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    write_case(model, "b_second", valid_case())
    first = valid_case()
    first["inputs"]["IMAGE"] = {"datatype": "BYTES", "shape": [2, 1], "data": ["a", "é"]}
    first["inputs"]["SCALE"] = {"datatype": "FP32", "shape": [2, 1], "data": [1, 2]}
    first["expected"] = {"COUNT": {"datatype": "INT64", "shape": [2, 2], "data": [1, 2, 3, 4]}}
    write_case(model, "a_first", first)
    (model.fixtures_dir / "notes.txt").write_text("not a case")

    cases = load_fixtures(model)

    assert [c.name for c in cases] == ["a_first", "b_second"]
    a, b = cases
    assert a.inputs[0].array.dtype == np.object_
    assert a.inputs[0].array.tolist() == [[b"a"], ["é".encode()]]
    assert a.expected[0].array.dtype == np.int64 and a.expected[0].shape == (2, 2)
    assert a.expected[0].atol == 1e-5 and a.expected[0].rtol == 1e-4  # defaults
    image, scale = b.inputs
    assert image.array.tolist() == [[b"\x89PNG raw bytes"]]
    assert scale.array.dtype == np.float32 and scale.array.tolist() == [[0.5, 1.0, 2.25]]
    probability = b.expected[1]
    assert (probability.atol, probability.rtol) == (1e-4, 1e-3)
    assert b.description == "a screen" and b.path == model.fixtures_dir / "b_second.json"


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    message, path = load_error(tmp_path, '{\n  "inputs": ,\n}')
    assert message == f"{path}:2:13: invalid JSON: Expecting value"


def test_unknown_input_name(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["PIXELS"] = case["inputs"].pop("SCALE")
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': inputs 'PIXELS' are not inputs of ensemble 'demo_pipeline' "
        "(its inputs: 'IMAGE', 'SCALE')"
    )


def test_missing_input(tmp_path: Path) -> None:
    case = valid_case()
    del case["inputs"]["SCALE"]
    message, path = load_error(tmp_path, case)
    assert (
        message
        == f"{path}: model 'demo': ensemble 'demo_pipeline' input 'SCALE' missing from 'inputs'"
    )


def test_expected_output_not_produced(tmp_path: Path) -> None:
    case = valid_case()
    case["expected"]["SCORE"] = case["expected"].pop("PROBABILITY")
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': expected outputs 'SCORE' are not produced by ensemble "
        "'demo_pipeline' (its outputs: 'LABEL', 'PROBABILITY', 'COUNT')"
    )


def test_datatype_must_match_config(tmp_path: Path) -> None:
    case = valid_case()
    case["expected"]["PROBABILITY"]["datatype"] = "FP64"
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': expected.PROBABILITY.datatype is FP64 but ensemble "
        "'demo_pipeline' declares FP32 (TYPE_FP32)"
    )
    case = valid_case()
    case["inputs"]["IMAGE"]["datatype"] = "STRING"
    message, path = load_error(tmp_path / "2", case)
    assert message == (
        f"{path}: model 'demo': inputs.IMAGE.datatype 'STRING' is not one of BOOL, UINT8, "
        "UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
    )


def test_shape_must_match_dims_with_batch(tmp_path: Path) -> None:
    case = valid_case()
    case["expected"]["PROBABILITY"]["shape"] = [1]
    case["expected"]["PROBABILITY"]["data"] = [0.5]
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': expected.PROBABILITY.shape [1] does not match dims "
        "[batch, 1] (batch dimension first, max_batch_size 8)"
    )


def test_batch_size_above_max_batch_size(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["SCALE"] = {"datatype": "FP32", "shape": [9, 1], "data": [1.0] * 9}
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': inputs.SCALE.shape [9, 1]: batch size 9 must be between 1 "
        "and max_batch_size 8"
    )


def test_wildcard_dim_accepts_any_size_and_no_batch_model(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["IMAGE"]["shape"] = [1]
    case["inputs"]["SCALE"] = {"datatype": "FP32", "shape": [5], "data": [1.0] * 5}
    case["expected"] = {"LABEL": {"datatype": "BYTES", "shape": [1], "data": ["x"]}}
    model = make_model(tmp_path, max_batch_size=0)
    write_case(model, "unbatched", case)
    (loaded,) = load_fixtures(model)
    assert loaded.inputs[1].shape == (5,)

    case["expected"]["LABEL"]["shape"] = [1, 1]
    message, path = load_error(tmp_path / "2", case, max_batch_size=0)
    assert message == (
        f"{path}: model 'demo': expected.LABEL.shape [1, 1] does not match dims [1] "
        "(max_batch_size 0: no batch dimension)"
    )


def test_inputs_must_agree_on_batch_size(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["SCALE"] = {"datatype": "FP32", "shape": [2, 1], "data": [1.0, 2.0]}
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': inputs disagree on the batch size (first dimension): "
        "IMAGE 1, SCALE 2"
    )


def test_data_length_must_match_shape(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["SCALE"]["data"] = [1.0, 2.0]
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': inputs.SCALE.data has 2 values but shape [1, 3] needs 3"
    )


def test_data_values_must_fit_the_datatype(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["SCALE"]["data"] = [1.0, "2", 3.0]
    message, path = load_error(tmp_path, case)
    assert message == f"{path}: model 'demo': inputs.SCALE.data[1] = \"2\" is not a FP32 value"
    case = valid_case()
    case["expected"] = {"COUNT": {"datatype": "INT64", "shape": [1, 2], "data": [1, 2.5]}}
    message, path = load_error(tmp_path / "2", case)
    assert message == f"{path}: model 'demo': expected.COUNT.data[1] = 2.5 is not a INT64 value"


def test_missing_file(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["IMAGE"]["files"] = ["gone.png"]
    message, path = load_error(tmp_path, case)
    missing = path.parent / "gone.png"
    assert message == (
        f"{path}: model 'demo': inputs.IMAGE.files[0]: cannot read {missing}: "
        "No such file or directory"
    )


def test_files_and_data_are_exclusive(tmp_path: Path) -> None:
    case = valid_case()
    case["inputs"]["IMAGE"]["data"] = ["x"]
    message, path = load_error(tmp_path, case)
    assert message == f"{path}: model 'demo': inputs.IMAGE: give exactly one of 'data' or 'files'"


def test_tolerances_must_be_non_negative_and_on_floats(tmp_path: Path) -> None:
    case = valid_case()
    case["expected"]["PROBABILITY"]["atol"] = -0.1
    message, path = load_error(tmp_path, case)
    assert (
        message == f"{path}: model 'demo': expected.PROBABILITY.atol must not be negative, got -0.1"
    )
    case = valid_case()
    case["expected"]["LABEL"]["rtol"] = 0.1
    message, path = load_error(tmp_path / "2", case)
    assert message == (
        f"{path}: model 'demo': expected.LABEL.rtol: tolerances apply to float outputs only; "
        "BYTES compares exactly"
    )


def test_unknown_keys_are_rejected_with_allowed_list(tmp_path: Path) -> None:
    case = valid_case()
    case["expected"]["PROBABILITY"]["tolerance"] = 0.1
    message, path = load_error(tmp_path, case)
    assert message == (
        f"{path}: model 'demo': expected.PROBABILITY: unknown key 'tolerance' "
        "(allowed: datatype, shape, data, atol, rtol)"
    )


def test_model_without_cases(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    with pytest.raises(FixtureError) as info:
        load_fixtures(model)
    assert str(info.value) == f"{model.fixtures_dir}: model 'demo' has no fixture cases (*.json)"


def test_kserve_datatype_names() -> None:
    assert kserve_datatype(DataType.Value("TYPE_FP32")) == "FP32"
    assert kserve_datatype(DataType.Value("TYPE_STRING")) == "BYTES"
    assert kserve_datatype(DataType.Value("TYPE_BOOL")) == "BOOL"
    assert kserve_datatype(DataType.Value("TYPE_UINT16")) == "UINT16"


# -------------------------------------------------------------------------------- comparison


def expected(
    name: str, datatype: str, values: list[Any], shape: tuple[int, ...], **tol: float
) -> Expected:
    if datatype == "BYTES":
        array = np.array([v.encode() for v in values], dtype=object).reshape(shape)
    else:
        array = np.array(values, dtype={"FP32": np.float32, "INT64": np.int64}[datatype])
        array = array.reshape(shape)
    return Expected(name, datatype, shape, array, **tol)


def one_case(*outputs: Expected) -> FixtureCase:
    return FixtureCase("c", Path("c.json"), "", (), tuple(outputs))


def test_floats_within_tolerance_pass_and_report_errors() -> None:
    want = expected("P", "FP32", [1.0, 2.0, 0.0], (1, 3), atol=1e-3, rtol=1e-2)
    got = np.array([[1.0005, 2.015, 0.0009]], dtype=np.float32)
    result = compare_output(want, got)
    assert result.passed and result.message == ""
    assert result.max_abs_error == pytest.approx(0.015, abs=1e-6)
    assert result.max_rel_error == pytest.approx(0.0075, abs=1e-6)


def test_float_mismatch_message_shows_first_differences() -> None:
    want = expected("PROBABILITY", "FP32", [0.5, 0.25, 0.75, 1.0], (2, 2))
    got = np.array([[0.5, 0.5], [0.75, 0.0]], dtype=np.float32)
    result = compare_output(want, got)
    assert not result.passed
    assert result.max_abs_error == 1.0
    assert result.message == (
        "PROBABILITY: 2 of 4 values outside |actual - expected| <= 1e-05 + 0.0001 * |expected|: "
        "[0, 1] expected 0.25 got 0.5; [1, 1] expected 1.0 got 0.0"
    )


def test_many_differences_are_truncated() -> None:
    want = expected("X", "INT64", list(range(8)), (1, 8))
    got = np.full((1, 8), 100, dtype=np.int64)
    result = compare_output(want, got)
    assert result.message == (
        "X: 8 of 8 values differ (exact comparison): [0, 0] expected 0 got 100; "
        "[0, 1] expected 1 got 100; [0, 2] expected 2 got 100; [0, 3] expected 3 got 100; "
        "[0, 4] expected 4 got 100; ... 3 more"
    )


def test_nan_equals_nan_but_not_a_number() -> None:
    want = expected("P", "FP32", [math.nan, 1.0], (1, 2))
    assert compare_output(want, np.array([[np.nan, 1.0]], dtype=np.float32)).passed
    result = compare_output(want, np.array([[0.0, np.nan]], dtype=np.float32))
    assert not result.passed
    assert result.max_abs_error == math.inf
    assert result.message.endswith("[0, 0] expected nan got 0.0; [0, 1] expected 1.0 got nan")


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e400], ids=["inf", "-inf", "1e400"])
def test_non_finite_expected_values_match_only_themselves(value: float) -> None:
    """Defect: rtol * |inf| = inf, so an expected Infinity (or 1e400) passed any finite output."""
    want = expected("P", "FP32", [value, 2.0], (1, 2))
    assert compare_output(want, np.array([[value, 2.0]], dtype=np.float32)).passed
    for wrong in (1.0, 3e38, -value, math.nan):
        result = compare_output(want, np.array([[wrong, 2.0]], dtype=np.float32))
        assert not result.passed, wrong
        assert result.message.startswith("P: 1 of 2 values outside"), result.message


def test_json_infinity_and_1e400_expected_do_not_pass_a_finite_output() -> None:
    for text in ("Infinity", "1e400"):  # both parse to an infinite float
        want = expected("P", "FP32", json.loads(f"[{text}]"), (1, 1))
        assert not compare_output(want, np.array([[3.0e38]], dtype=np.float32)).passed


def test_shape_dtype_and_missing_outputs_fail() -> None:
    want = expected("P", "FP32", [1.0], (1, 1))
    case = one_case(
        want, expected("N", "INT64", [1, 2], (1, 2)), expected("L", "BYTES", ["a"], (1, 1))
    )
    result = compare_case(
        case,
        {"P": np.array([1.0, 1.0], dtype=np.float32), "N": np.array([[1.0, 2.0]])},
    )
    assert isinstance(result, CaseResult) and not result.passed
    assert [c.message for c in result.comparisons] == [
        "P: shape [2], expected [1, 1]",
        "N: datatype FP64, expected INT64",
        "L: missing from the outputs",
    ]


def test_bytes_compare_exactly_and_display_decoded() -> None:
    want = expected("LABEL", "BYTES", ["screen", "not_screen"], (2, 1))
    assert compare_output(want, np.array([[b"screen"], [b"not_screen"]], dtype=object)).passed
    result = compare_output(want, np.array([[b"screen"], ["écran".encode()]], dtype=object))
    assert not result.passed and result.max_abs_error is None
    assert result.message == "LABEL: 1 of 2 values differ: [1, 0] expected 'not_screen' got 'écran'"


# ------------------------------------------------------------------------------------ writing


def test_update_and_write_keep_tolerances_and_use_shortest_floats(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    path = write_case(model, "case", valid_case())
    document = read_fixture_document(path)
    outputs = {
        "LABEL": np.array([[b"not_screen"]], dtype=object),
        "PROBABILITY": np.array([[0.1]], dtype=np.float32),
    }
    updated = update_expected(document, outputs)
    write_fixture(path, updated)

    text = path.read_text()
    assert text == (
        "{\n"
        '  "description": "a screen",\n'
        '  "inputs": {\n'
        '    "IMAGE": {\n'
        '      "datatype": "BYTES",\n'
        '      "shape": [1, 1],\n'
        '      "files": ["screen.png"]\n'
        "    },\n"
        '    "SCALE": {\n'
        '      "datatype": "FP32",\n'
        '      "shape": [1, 3],\n'
        '      "data": [0.5, 1, 2.25]\n'
        "    }\n"
        "  },\n"
        '  "expected": {\n'
        '    "LABEL": {\n'
        '      "datatype": "BYTES",\n'
        '      "shape": [1, 1],\n'
        '      "data": ["not_screen"]\n'
        "    },\n"
        '    "PROBABILITY": {\n'
        '      "datatype": "FP32",\n'
        '      "shape": [1, 1],\n'
        '      "data": [0.1],\n'
        '      "atol": 0.0001,\n'
        '      "rtol": 0.001\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["case.json", "screen.png"]
    assert format_fixture(read_fixture_document(path)) == text  # stable
    (case,) = load_fixtures(model)
    assert case.expected[1].array.tolist() == [[np.float32(0.1)]]


def test_format_keeps_key_order_and_wraps_long_lists() -> None:
    document = {
        "expected": {"Y": {"rtol": 0.5, "data": [1.5] * 40, "shape": [1, 40], "datatype": "FP32"}},
        "inputs": {"B": {"data": [], "shape": [0], "datatype": "FP32"}, "A": {}},
        "description": "d",
    }
    text = format_fixture(document)
    assert text.index('"description"') < text.index('"inputs"') < text.index('"expected"')
    assert text.index('"B"') < text.index('"A"')  # tensor names keep the user's order
    assert '"datatype": "FP32",\n      "shape": [1, 40],\n      "data": [\n' in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert json.loads(text)["expected"]["Y"]["data"] == [1.5] * 40


def test_json_values_of_special_floats_and_non_utf8_bytes() -> None:
    values = json_values(np.array([np.nan, np.inf, -0.0, 1e-8], dtype=np.float32), "FP32")
    assert (
        format_fixture({"expected": {"X": {"data": values}}}).count("NaN, Infinity, -0.0, 1e-08")
        == 1
    )
    with pytest.raises(FixtureError) as info:
        json_values(np.array([b"\xff\xfe"], dtype=object), "BYTES")
    assert str(info.value) == (
        "element 0 is not UTF-8 text (b'\\xff\\xfe'...); BYTES fixture data must be text"
    )
