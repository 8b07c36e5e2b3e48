"""What the tests of build/test_package.py share across tiers
(or with other test files): moved here when test_artifact.py was split into tiers."""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import replace
from pathlib import Path

from mmetools.build import package as artifact_module
from mmetools.pipeline import package_model
from mmetools.model.folder import ModelFolder
from mmetools.core.settings import CacheSettings, Settings, load_settings

PREPROCESSING_CONFIG = """\
# Python step: bytes in, floats out.
name: "demo_preprocessing"
backend: "python"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "FEATURES" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
INFERENCER_CONFIG = """\
name: "demo_inferencer"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "features" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""
PIPELINE_CONFIG = """\
name: "demo_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ 2 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "demo_preprocessing"
      model_version: -1
      input_map { key: "RAW" value: "RAW" }
      output_map { key: "FEATURES" value: "features" }
    },
    {
      model_name: "demo_inferencer"
      model_version: -1
      input_map { key: "features" value: "features" }
      output_map { key: "scores" value: "SCORES" }
    }
  ]
}
"""
MODEL_PY = (
    "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n    pass\n"
)


def make_demo_model(root: Path, *, weight_bytes: int = 300_000) -> ModelFolder:
    """A model folder with every kind of file the packager must keep or leave out."""
    model = root / "models" / "demo"
    (root / ".dvc").mkdir(parents=True)  # a DVC repository (weights match, so dvc never runs)
    files = {
        "model_version.txt": "3\n",
        "requirements.txt": "numpy\n",
        "README.md": "# demo\n",
        "train.py": "print('train')\n",
        "tests/fixtures/case.json": "{}\n",
        "demo_preprocessing/config.pbtxt": PREPROCESSING_CONFIG,
        "demo_preprocessing/1/model.py": MODEL_PY,
        "demo_preprocessing/1/helpers/tokens.txt": "a\nb\n",
        # left out without a word
        "demo_preprocessing/1/__pycache__/model.cpython-311.pyc": "x",
        "demo_preprocessing/1/stale.pyc": "x",
        "demo_preprocessing/1/model.py~": "x",
        "demo_preprocessing/1/.model.py.swp": "x",
        "demo_preprocessing/1/notes.swp": "x",
        "demo_preprocessing/.DS_Store": "x",
        "demo_preprocessing/.idea/workspace.xml": "x",
        "demo_preprocessing/.vscode/settings.json": "{}",
        "demo_preprocessing/tests/test_pre.py": "x",
        "demo_inferencer/config.pbtxt": INFERENCER_CONFIG,
        "demo_inferencer/1/.gitignore": "/model.onnx\n",
        "demo_pipeline/config.pbtxt": PIPELINE_CONFIG,
    }
    for name, text in files.items():
        path = model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # Deterministic pseudo-weights, larger than one deflate block, with their DVC pointer.
    weights = hashlib.shake_256(b"weights").digest(weight_bytes)
    (model / "demo_inferencer" / "1" / "model.onnx").write_bytes(weights)
    (model / "demo_inferencer" / "1" / "model.onnx.dvc").write_text(
        f"outs:\n- md5: {hashlib.md5(weights).hexdigest()}\n  size: {len(weights)}\n"
        "  hash: md5\n  path: model.onnx\n"
    )
    return ModelFolder(model)


def settings_for(root: Path) -> Settings:
    return replace(load_settings(root), cache=CacheSettings(dir=str(root / "cache")))


def build(model: ModelFolder, out: Path, **options: object) -> artifact_module.Artifact:
    options = {"with_env": False, "validate": False, "fetch_weights": False, **options}
    return package_model(model, out, settings_for(model.path.parents[1]), **options)  # type: ignore[arg-type]


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()
