"""mmetools.model.validation.triton_rules: one broken config per rule Triton applies to a model on its
own, each asserting the exact messages (and that nothing else is reported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.model.validation_support import (
    INF_PATH,
    PIPE,
    PIPE_PATH,
    PRE_PATH,
    X_TO_Y,
    Case,
    check_case,
)

CASES = [
    Case("valid"),
    Case(
        "config name differs from folder name",
        edits=[("foo_inferencer", 'name: "foo_inferencer"', 'name: "foo_inf"')],
        expected=[
            f"{INF_PATH}: name 'foo_inf' differs from the folder name 'foo_inferencer'; Triton "
            "requires the config name to equal its folder name"
        ],
    ),
    Case(
        "config without name (Triton takes the folder name)",
        edits=[("foo_inferencer", 'name: "foo_inferencer"\n', "")],
    ),
    Case(
        "ensemble platform without ensemble_scheduling",
        edits=[("foo_pipeline", PIPE[PIPE.index("ensemble_scheduling") :], "")],
        expected=[f'{PIPE_PATH}: platform is "ensemble" but ensemble_scheduling is missing'],
    ),
    Case(
        "ensemble with a backend",
        edits=[("foo_pipeline", 'platform: "ensemble"', 'platform: "ensemble" backend: "python"')],
        expected=[
            f'{PIPE_PATH}: an ensemble must not set backend (found backend: "python"); Triton '
            'requires platform: "ensemble" and no backend'
        ],
    ),
    Case(
        "ensemble with instance_group",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                "max_batch_size: 8 instance_group [ { kind: KIND_CPU } ]",
            )
        ],
        expected=[f"{PIPE_PATH}: instance_group must not be set for an ensemble"],
    ),
    Case(
        "ensemble with optimization",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                "max_batch_size: 8 optimization { input_pinned_memory { enable: true } }",
            )
        ],
        expected=[f"{PIPE_PATH}: optimization must not be set for an ensemble"],
    ),
    Case(
        "ensemble with model_warmup",
        edits=[
            (
                "foo_pipeline",
                "max_batch_size: 8",
                'max_batch_size: 8 model_warmup [ { name: "w" batch_size: 1 } ]',
            )
        ],
        expected=[f"{PIPE_PATH}: model_warmup must not be set for an ensemble"],
    ),
    Case(
        "ensemble_scheduling on a model that is not an ensemble",
        extra={
            "foo_odd": X_TO_Y.replace("{name}", "foo_odd")
            + 'ensemble_scheduling { step [ { model_name: "foo_inferencer" model_version: -1\n'
            '  input_map { key: "X" value: "X" } output_map { key: "Y" value: "Y" } } ] }\n'
        },
        expected=[
            "repo/foo_odd/config.pbtxt: ensemble_scheduling is set but platform is not set, "
            'not "ensemble"'
        ],
    ),
    Case(
        "negative max_batch_size",
        extra={"foo_extra": X_TO_Y.replace("{name}", "foo_extra").replace("8", "-1")},
        expected=["repo/foo_extra/config.pbtxt: max_batch_size must be >= 0, got -1"],
    ),
    Case(
        "neither platform nor backend",
        edits=[("foo_inferencer", 'platform: "onnxruntime_onnx"\n', "")],
        expected=[
            f"{INF_PATH}: warning: sets neither platform nor backend; Triton then guesses the "
            "backend from the files in the first version folder: set it explicitly"
        ],
    ),
    Case(
        "platform and backend that do not match",
        edits=[
            (
                "foo_inferencer",
                'platform: "onnxruntime_onnx"',
                'platform: "onnxruntime_onnx" backend: "pytorch"',
            )
        ],
        expected=[
            f"{INF_PATH}: platform 'onnxruntime_onnx' and backend 'pytorch' do not match "
            "(platform 'onnxruntime_onnx' runs on backend 'onnxruntime')"
        ],
    ),
    Case(
        "unknown backend is a warning",
        edits=[("foo_preprocessing", 'backend: "python"', 'backend: "custom"')],
        expected=[
            f"{PRE_PATH}: warning: unknown backend 'custom'; the serving Triton must provide it"
        ],
    ),
    Case(
        "unknown platform",
        edits=[("foo_inferencer", 'platform: "onnxruntime_onnx"', 'platform: "onnx"')],
        expected=[
            f"{INF_PATH}: unknown platform 'onnx' and no backend (known platforms: ensemble, "
            "libtorch, onnxruntime_onnx, pytorch_libtorch, tensorflow_graphdef, "
            "tensorflow_savedmodel, tensorrt_plan, torch_aoti)"
        ],
    ),
    Case(
        "tensor declarations Triton rejects",
        extra={"foo_extra": """\
name: "foo_extra"
backend: "python"
max_batch_size: 0
input [
  { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "B" dims: [ 1 ] },
  { name: "C" data_type: TYPE_FP32 },
  { data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "D" data_type: TYPE_FP32 dims: [ 0, 3 ] }
]
output [
  { name: "E" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } },
  { name: "F" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 5 ] } },
  { name: "G" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ -1, 2 ] } },
  { name: "H" data_type: TYPE_FP32 dims: [ 2, -1 ] reshape { shape: [ -1, -1, 2 ] } },
  { name: "I" data_type: TYPE_FP32 dims: [ 2, -1, 3 ] reshape { shape: [ 2, -1, 3, 1 ] } },
  { name: "J" data_type: TYPE_FP32 dims: [ 2 ] reshape { shape: [ 0, 2 ] } }
]
"""},
        expected=[
            "repo/foo_extra/config.pbtxt: input 'A' is declared twice",
            "repo/foo_extra/config.pbtxt: input 'B' has no data_type",
            "repo/foo_extra/config.pbtxt: input 'C' has no dims",
            "repo/foo_extra/config.pbtxt: input 5 has no name",
            "repo/foo_extra/config.pbtxt: input 'D' has dims [0,3]; each dimension must be >= "
            "1, or -1 for a variable size",
            "repo/foo_extra/config.pbtxt: output 'E' has an empty reshape in a model that does "
            "not batch (max_batch_size 0); Triton does not support scalar tensors",
            "repo/foo_extra/config.pbtxt: output 'F' has dims [2,3] and reshape [5] with "
            "different element counts",
            "repo/foo_extra/config.pbtxt: output 'G' has dims [2,-1] and reshape [-1,2] with "
            "different element counts",
            "repo/foo_extra/config.pbtxt: output 'H' has dims [2,-1] and reshape [-1,-1,2] with "
            "different numbers of variable-size dimensions",
            "repo/foo_extra/config.pbtxt: output 'J' has reshape [0,2]; each dimension must be "
            ">= 1, or -1 for a variable size",
        ],
    ),
    Case(
        "model without version folder",
        versions={"foo_inferencer": []},
        expected=[
            f"{INF_PATH}: no version folder (such as foo_inferencer/1/); "
            "Triton finds no version to load"
        ],
    ),
    Case(
        "ensemble without version folder",
        versions={"foo_pipeline": []},
        expected=[
            f"{PIPE_PATH}: no version folder (such as foo_pipeline/1/); "
            "Triton finds no version to load"
        ],
    ),
    Case(
        "version_policy naming a missing folder",
        edits=[
            (
                "foo_inferencer",
                "max_batch_size: 8",
                "max_batch_size: 8 version_policy { specific { versions: [ 1, 3 ] } }",
            )
        ],
        expected=[
            f"{INF_PATH}: warning: version_policy lists version 3, but there is no folder "
            "foo_inferencer/3/"
        ],
    ),
    Case(
        "version_policy selecting no folder",
        edits=[
            (
                "foo_inferencer",
                "max_batch_size: 8",
                "max_batch_size: 8 version_policy { specific { versions: [ 3 ] } }",
            )
        ],
        expected=[
            f"{INF_PATH}: warning: version_policy lists version 3, but there is no folder "
            "foo_inferencer/3/",
            f"{INF_PATH}: version_policy selects none of the version folders (1); "
            "Triton finds no version to load",
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_repository_rules(tmp_path: Path, case: Case) -> None:
    check_case(tmp_path, case)
