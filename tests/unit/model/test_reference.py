"""The in-process reference runner (no Triton) and fixture regeneration, on small real models
built in tmp_path (Python steps, a real ONNX graph, a real TorchScript module) and on the
repository's two example models."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS_DIR
from mmetools.cli import main
from mmetools.core.errors import ConfigError, FixtureError, ModelRunError
from mmetools.model.dvc import fetch_weights
from mmetools.model.cases import load_fixtures, read_fixture_document
from mmetools.model.config import load_config
from mmetools.model.folder import ModelFolder
from mmetools.model.reference.pb_utils_standin import PB_UTILS_MODULE, triton_config_json
from mmetools.model.reference import (
    ReferenceRunner,
    plan_steps,
    regenerate_fixtures,
    run_cases,
    run_reference,
)

PRE_CONFIG = """
name: "toy_pre"
backend: "python"
max_batch_size: 4
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "SCALED" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
PRE_MODEL = """
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

import helpers  # a sibling module in 1/, as Triton allows


class TritonPythonModel:
    def initialize(self, args):
        self.folder = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(self.folder, "args.json"), "w") as f:
            json.dump(args, f)
        config = json.loads(args["model_config"])
        output = pb_utils.get_output_config_by_name(config, "SCALED")
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy()
            scaled = (raw * helpers.FACTOR).astype(self.dtype)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCALED", scaled)]))
        return responses

    def finalize(self):
        open(os.path.join(self.folder, "finalized"), "w").close()
"""
NET_CONFIG = """
name: "toy_net"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
POST_CONFIG = """
name: "toy_post"
backend: "python"
max_batch_size: 4
input [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [
  { name: "NAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TOTAL" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""
POST_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        import helpers  # imported late; same name as toy_pre's helpers.py, other content

        responses = []
        for request in requests:
            y = pb_utils.get_input_tensor_by_name(request, "Y").as_numpy()
            total = y.sum(axis=1, keepdims=True).astype(np.float32)
            names = np.array([[helpers.BIG if t > 10 else "small"] for t in total[:, 0]], dtype=object)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("NAME", names), pb_utils.Tensor("TOTAL", total)]
                )
            )
        return responses
"""
PIPELINE_CONFIG = """
name: "toy_pipeline"
platform: "ensemble"
max_batch_size: 4
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [
  { name: "NAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TOTAL" data_type: TYPE_FP32 dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "toy_post"
      model_version: -1
      input_map { key: "Y" value: "y" }
      output_map { key: "NAME" value: "NAME" }
      output_map { key: "TOTAL" value: "TOTAL" }
    },
    {
      model_name: "toy_pre"
      model_version: 1
      input_map { key: "RAW" value: "RAW" }
      output_map { key: "SCALED" value: "scaled" }
    },
    {
      model_name: "toy_net"
      model_version: -1
      input_map { key: "x" value: "scaled" }
      output_map { key: "y" value: "y" }
    }
  ]
}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def write_add_one_onnx(path: Path) -> None:
    """A real ONNX graph: y = x + 1, batch dimension dynamic."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture
def toy(tmp_path: Path) -> ModelFolder:
    """models/toy: Python pre (x2) -> ONNX (+1) -> Python post (sum, name), steps listed out of
    order in the ensemble, with one fixture case."""
    folder = tmp_path / "toy"
    write(folder / "model_version.txt", "1\n")
    write(folder / "toy_pre" / "config.pbtxt", PRE_CONFIG)
    write(folder / "toy_pre" / "1" / "model.py", PRE_MODEL)
    write(folder / "toy_pre" / "1" / "helpers.py", "FACTOR = 2\n")
    write(folder / "toy_net" / "config.pbtxt", NET_CONFIG)
    write_add_one_onnx(folder / "toy_net" / "1" / "model.onnx")
    write(folder / "toy_post" / "config.pbtxt", POST_CONFIG)
    write(folder / "toy_post" / "1" / "model.py", POST_MODEL)
    write(folder / "toy_post" / "1" / "helpers.py", 'BIG = "big"\n')
    write(folder / "toy_pipeline" / "config.pbtxt", PIPELINE_CONFIG)
    case = {
        "description": "two rows",
        "inputs": {"RAW": {"datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}},
        "expected": {
            "NAME": {"datatype": "BYTES", "shape": [2, 1], "data": ["small", "big"]},
            "TOTAL": {"datatype": "FP32", "shape": [2, 1], "data": [8.0, 16.0], "atol": 0.01},
        },
    }
    write(folder / "tests" / "fixtures" / "two_rows.json", json.dumps(case, indent=2))
    return ModelFolder(folder)


def test_runs_ensemble_steps_in_dependency_order(toy: ModelFolder) -> None:
    outputs = run_reference(toy, {"RAW": np.array([[1, 2], [3, 4]], dtype=np.float32)})
    # (1*2+1) + (2*2+1) = 8 ; (3*2+1) + (4*2+1) = 16
    assert outputs["TOTAL"].tolist() == [[8.0], [16.0]]
    assert outputs["TOTAL"].dtype == np.float32
    assert outputs["NAME"].tolist() == [[b"small"], [b"big"]]  # str became utf-8 bytes
    assert PB_UTILS_MODULE not in sys.modules  # the stand-in is removed afterwards
    assert "helpers" not in sys.modules  # so are the steps' own sibling modules


def test_initialize_gets_triton_args_and_finalize_runs(toy: ModelFolder) -> None:
    run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    step = toy.path / "toy_pre"
    args = json.loads((step / "1" / "args.json").read_text())
    assert {k: v for k, v in args.items() if k != "model_config"} == {
        "model_instance_kind": "CPU",
        "model_instance_name": "toy_pre_0",
        "model_instance_device_id": "0",
        "model_repository": str(step),
        "model_version": "1",
        "model_name": "toy_pre",
    }
    config = json.loads(args["model_config"])
    assert config["input"][0]["dims"] == [2]  # int64 as numbers, as Triton writes them
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["max_batch_size"] == 4 and config["backend"] == "python"
    assert config["instance_group"] == [
        {
            "name": "toy_pre",
            "kind": "KIND_CPU",
            "count": 1,
            "gpus": [],
            "secondary_devices": [],
            "profile": [],
            "passive": False,
            "host_policy": "",
        }
    ]
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["parameters"] == {} and config["platform"] == ""  # defaults are printed
    assert (step / "1" / "finalized").is_file()


def test_triton_config_json_converts_every_int64_field() -> None:
    config = load_config(
        MODELS_DIR / "screen_detector" / "screen_detector_inferencer" / "config.pbtxt"
    )
    as_json = json.loads(triton_config_json(config, "screen_detector_inferencer"))
    assert as_json["input"][0]["dims"] == [3, 64, 64]
    assert as_json["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert as_json["name"] == "screen_detector_inferencer"


def test_plan_orders_steps_and_reports_cycles(toy: ModelFolder) -> None:
    plan = plan_steps(toy.ensemble(), toy.repository())
    assert [s.model.name for s in plan] == ["toy_pre", "toy_net", "toy_post"]
    config = toy.path / "toy_pipeline" / "config.pbtxt"
    config.write_text(config.read_text().replace('value: "RAW" }', 'value: "y" }'))
    with pytest.raises(ConfigError) as info:
        plan_steps(toy.ensemble(), toy.repository())
    assert str(info.value) == (
        f"{config}: steps can never run (missing or cyclic tensors): step 1 ('toy_post') waits "
        "for y; step 2 ('toy_pre') waits for y; step 3 ('toy_net') waits for scaled"
    )


def test_run_cases_compares_with_fixtures(toy: ModelFolder) -> None:
    (result,) = run_cases(toy)
    assert result.passed, result.comparisons
    assert [c.output for c in result.comparisons] == ["NAME", "TOTAL"]


def test_step_exception_names_file_and_shows_its_traceback(toy: ModelFolder) -> None:
    model_py = toy.path / "toy_pre" / "1" / "model.py"
    model_py.write_text(
        model_py.read_text().replace(
            "scaled = (raw", "raise KeyError('no such column')\n            scaled = (raw"
        )
    )
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    message = str(info.value)
    assert message.startswith(
        f"{model_py}: execute() of Python step 'toy_pre' raised KeyError: 'no such column'\n"
    )
    line = model_py.read_text().splitlines().index("            raise KeyError('no such column')")
    assert f'File "{model_py}", line {line + 1}, in execute' in message
    assert (toy.path / "toy_pre" / "1" / "finalized").is_file()  # finalized despite the error
    assert PB_UTILS_MODULE not in sys.modules


def test_error_response_and_wrong_dtype_are_reported(toy: ModelFolder) -> None:
    model_py = toy.path / "toy_post" / "1" / "model.py"
    original = model_py.read_text()
    model_py.write_text(
        original.replace(
            "responses.append(\n",
            "responses.append(pb_utils.InferenceResponse([], pb_utils.TritonError('bad row')))\n"
            "            continue\n            responses.append(\n",
        )
    )
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    assert str(info.value) == f"{model_py}: Python step 'toy_post' answered with an error: bad row"

    model_py.write_text(original.replace(".astype(np.float32)", ".astype(np.float64)"))
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    pipeline = toy.path / "toy_pipeline" / "config.pbtxt"
    post = toy.path / "toy_post" / "config.pbtxt"
    assert str(info.value) == (
        f"{pipeline}: output 'TOTAL' of 'toy_post' is FP64 but {post} declares FP32"
    )


def test_wrong_output_shape_is_reported(toy: ModelFolder) -> None:
    model_py = toy.path / "toy_pre" / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace("raw * helpers.FACTOR", "raw[:, :1]"))
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    pipeline = toy.path / "toy_pipeline" / "config.pbtxt"
    pre = toy.path / "toy_pre" / "config.pbtxt"
    assert str(info.value) == (
        f"{pipeline}: output 'SCALED' of 'toy_pre' (ensemble tensor 'scaled') has shape [1, 1] "
        f"but {pre} declares [batch, 2]"
    )


def test_missing_weights_point_at_dvc(toy: ModelFolder) -> None:
    weights = toy.path / "toy_net" / "1" / "model.onnx"
    weights.rename(weights.with_name("model.onnx.dvc"))
    with pytest.raises(ConfigError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    assert str(info.value) == (
        f"{weights}: weight file of step 'toy_net' is missing "
        "(its DVC pointer model.onnx.dvc is there: run `dvc pull`)"
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_inputs_follow_index_names(tmp_path: Path) -> None:
    import torch

    class Difference(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a - b, a + b

    folder = tmp_path / "ts"
    write(folder / "model_version.txt", "1\n")
    # Config lists INPUT__1 first: Triton's pytorch backend passes inputs by their __<index>.
    write(
        folder / "ts_net" / "config.pbtxt",
        """
        name: "ts_net"
        platform: "pytorch_libtorch"
        max_batch_size: 2
        input [ { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 1 ] },
                { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ 1 ] },
                 { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1 ] } ]
        """,
    )
    (folder / "ts_net" / "1").mkdir()
    torch.jit.script(Difference()).save(str(folder / "ts_net" / "1" / "model.pt"))
    write(
        folder / "ts_pipeline" / "config.pbtxt",
        """
        name: "ts_pipeline"
        platform: "ensemble"
        max_batch_size: 2
        input [ { name: "A" data_type: TYPE_FP32 dims: [ 1 ] },
                { name: "B" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "DIFF" data_type: TYPE_FP32 dims: [ 1 ] },
                 { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] } ]
        ensemble_scheduling { step [ { model_name: "ts_net" model_version: -1
          input_map { key: "INPUT__0" value: "A" } input_map { key: "INPUT__1" value: "B" }
          output_map { key: "OUTPUT__0" value: "DIFF" } output_map { key: "OUTPUT__1" value: "SUM" }
        } ] }
        """,
    )
    outputs = run_reference(
        ModelFolder(folder),
        {"A": np.array([[5.0]], dtype=np.float32), "B": np.array([[2.0]], dtype=np.float32)},
    )
    assert outputs["DIFF"].tolist() == [[3.0]]
    assert outputs["SUM"].tolist() == [[7.0]]


def test_runner_keeps_steps_loaded_across_runs(toy: ModelFolder) -> None:
    with ReferenceRunner(toy) as runner:
        assert [t.step for t in runner.timings] == ["toy_pre", "toy_net", "toy_post"]
        assert [t.kind for t in runner.timings] == ["python", "onnx", "python"]
        first = runner.run({"RAW": np.ones((1, 2), dtype=np.float32)})
        second = runner.run({"RAW": np.full((3, 2), 2, dtype=np.float32)})
        assert (
            sys.modules[PB_UTILS_MODULE].Tensor.__module__
            == "mmetools.model.reference.pb_utils_standin"
        )
    assert first["TOTAL"].tolist() == [[6.0]]
    assert second["TOTAL"].tolist() == [[10.0]] * 3


# ------------------------------------------------------------------------------- regeneration


def test_regen_rewrites_expected_keeping_tolerances(toy: ModelFolder) -> None:
    path = toy.fixtures_dir / "two_rows.json"
    document = read_fixture_document(path)
    document["expected"]["TOTAL"]["data"] = [8.004, 99.0]
    document["expected"]["NAME"]["data"] = ["small", "huge"]
    path.write_text(json.dumps(document))

    (result,) = regenerate_fixtures(toy)

    assert result.written
    assert [(c.output, c.status, c.values_changed) for c in result.changes] == [
        ("NAME", "changed", 1),
        ("TOTAL", "changed", 2),
    ]
    assert result.changes[1].max_abs_change == pytest.approx(83.0)
    regenerated = read_fixture_document(path)
    assert regenerated["expected"]["TOTAL"] == {
        "datatype": "FP32",
        "shape": [2, 1],
        "data": [8.0, 16.0],
        "atol": 0.01,
    }
    assert regenerated["description"] == "two rows"
    assert run_cases(toy)[0].passed

    (again,) = regenerate_fixtures(toy)  # nothing moves: file untouched
    assert not again.written and not again.changed


def test_regen_reports_changes_within_tolerance(toy: ModelFolder) -> None:
    path = toy.fixtures_dir / "two_rows.json"
    document = read_fixture_document(path)
    document["expected"]["TOTAL"]["data"] = [8.004, 16.0]
    path.write_text(json.dumps(document))
    (result,) = regenerate_fixtures(toy, ["two_rows"], write=False)
    assert [c.status for c in result.changes] == ["unchanged", "within tolerance"]
    assert not result.written
    assert read_fixture_document(path)["expected"]["TOTAL"]["data"] == [8.004, 16.0]


def test_regen_of_unknown_case_lists_cases(toy: ModelFolder) -> None:
    with pytest.raises(FixtureError) as info:
        regenerate_fixtures(toy, ["nope"])
    assert str(info.value) == f"{toy.fixtures_dir}: no case named 'nope' (cases: two_rows)"


def test_regen_works_when_stored_values_no_longer_fit(toy: ModelFolder) -> None:
    path = toy.fixtures_dir / "two_rows.json"
    document = read_fixture_document(path)
    document["expected"]["TOTAL"]["shape"] = [2]
    document["expected"]["TOTAL"]["data"] = []
    path.write_text(json.dumps(document))
    (result,) = regenerate_fixtures(toy)
    assert result.changes[1].status == "shape changed"
    assert load_fixtures(toy)[0].expected[1].shape == (2, 1)


def test_an_output_named_unlike_the_config_is_reported_against_its_step(toy: ModelFolder) -> None:
    model_py = toy.path / "toy_pre" / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace('Tensor("SCALED"', 'Tensor("SCALE"'))
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    pre = toy.path / "toy_pre" / "config.pbtxt"
    assert str(info.value) == (
        f"{pre}: Python step 'toy_pre' did not return output 'SCALED' that its config declares "
        "and the ensemble reads as 'scaled' (it returned: SCALE): the names model.py gives "
        "pb_utils.Tensor must be the output names of its config.pbtxt"
    )


def test_cli_fixtures_check_and_regen(toy: ModelFolder, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fixtures", "check", str(toy.path)]) == 0
    path = toy.fixtures_dir / "two_rows.json"
    document = read_fixture_document(path)
    document["expected"]["TOTAL"]["data"] = [8.0, 17.0]
    path.write_text(json.dumps(document))
    capsys.readouterr()

    assert main(["fixtures", "check", str(toy.path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: TOTAL: 1 of 2 values outside" in err
    assert "[1, 0] expected 17.0 got 16.0" in err
    assert err.rstrip().splitlines()[-1] == (
        f"if the new outputs are intended, update the expected values with `mmetools fixtures "
        f"regen {toy.path}` and review the diff before committing"
    )

    assert main(["fixtures", "regen", str(toy.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 case(s) would change; nothing written" in out
    assert main(["fixtures", "regen", str(toy.path)]) == 0
    assert "1 of 1 fixture file(s) rewritten" in capsys.readouterr().out
    assert main(["fixtures", "check", str(toy.path)]) == 0


# ------------------------------------------------------------------------------- the examples

EXAMPLES = ("screen_detector", "intent_classifier")


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_match_committed_fixtures(name: str, tmp_path: Path) -> None:
    """The expected values committed with the examples are what the reference runner computes
    (within each output's tolerance); weights are fetched through DVC when absent."""
    model = ModelFolder(MODELS_DIR / name)
    fetch_weights(model)
    cases = load_fixtures(model)
    assert len(cases) >= 3
    results = run_cases(model, cases)
    failures = [
        f"{r.case.name}: {r.error or '; '.join(c.message for c in r.comparisons if not c.passed)}"
        for r in results
        if not r.passed
    ]
    assert failures == []

    # Regenerating a scratch copy moves no value beyond its tolerance.
    copy = tmp_path / name
    shutil.copytree(model.path, copy)
    moved = [
        f"{c.case}/{c.output}: {c.status}"
        for r in regenerate_fixtures(ModelFolder(copy), write=False)
        for c in r.changes
        if c.status not in ("unchanged", "within tolerance")
    ]
    assert moved == []


def test_load_failure_finalizes_loaded_steps(toy: ModelFolder) -> None:
    weights = toy.path / "toy_net" / "1" / "model.onnx"
    weights.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelRunError) as info:
        run_reference(toy, {"RAW": np.zeros((1, 2), dtype=np.float32)})
    assert str(info.value).startswith(f"{weights}: onnxruntime cannot load it: ")
    assert (toy.path / "toy_pre" / "1" / "finalized").is_file()  # loaded before: finalized
    assert PB_UTILS_MODULE not in sys.modules
