"""What the tests of build/test_envpack.py share across tiers
(or with other test files): moved here when test_envpack.py was split into tiers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mmetools.model.folder import ModelFolder
from mmetools.core.settings import (
    CacheSettings,
    EnvSettings,
    Settings,
    TargetSettings,
    load_settings,
)

IMAGE_2412 = "nvcr.io/nvidia/tritonserver:24.12-py3"
IMAGE_2409 = "nvcr.io/nvidia/tritonserver:24.09-py3"

PRE_CONFIG = """\
# Decodes text.   (this comment and the odd spacing must survive)
name:   "demo_preprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "IDS" data_type: TYPE_INT64 dims: [ 4 ] } ]
parameters: {
  key: "EXECUTION_ENV_PATH"
  value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" }
}"""  # no trailing newline on purpose
POST_CONFIG = """\
name: "demo_postprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "IDS" data_type: TYPE_INT64 dims: [ 4 ] } ]
output [ { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] } ]
parameters: { key: "EXECUTION_ENV_PATH", value: { string_value: "$$TRITON_MODEL_DIRECTORY/python_env.tar.gz" } }
"""
PIPELINE_CONFIG = """\
name: "demo_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "demo_preprocessing" model_version: -1
    input_map { key: "TEXT" value: "TEXT" } output_map { key: "IDS" value: "ids" } },
  { model_name: "demo_postprocessing" model_version: -1
    input_map { key: "IDS" value: "ids" } output_map { key: "LABEL" value: "LABEL" } }
] }
"""


def make_model(root: Path, requirements: str = "numpy==1.26.4\n") -> ModelFolder:
    model = root / "models" / "demo"
    files = {
        "model_version.txt": "1\n",
        "requirements.txt": requirements,
        "demo_preprocessing/config.pbtxt": PRE_CONFIG,
        "demo_preprocessing/1/model.py": "",
        "demo_postprocessing/config.pbtxt": POST_CONFIG,
        "demo_postprocessing/1/model.py": "",
        "demo_pipeline/config.pbtxt": PIPELINE_CONFIG,
    }
    for name, text in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text(text, encoding="utf-8")
    return ModelFolder(model)


def settings_for(root: Path, image: str = IMAGE_2412) -> Settings:
    settings = load_settings(root, environ={})
    return replace(
        settings,
        env=EnvSettings(backend="venv"),
        cache=CacheSettings(dir=str(root / "cache")),
        target_settings=TargetSettings(image=image),
    )
