"""Write the fixture cases of the screen detector: input images and expected outputs.

    .venv/bin/python models/screen_detector/make_fixtures.py

Images are generated with fixed seeds (same generators as train.py) into tests/fixtures/, then
the expected outputs are computed by running the ensemble's steps directly in Python: the
preprocessing model.py, the ONNX weights with onnxruntime, the postprocessing model.py.
Needs the weights (`mmetools fetch models/screen_detector`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from mmetools.model.cases import json_values, write_fixture

import train  # this folder's train.py: the same generators, paths and step modules

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "tests" / "fixtures"
postprocessing = train.load_step_module(
    HERE / "screen_detector_postprocessing" / "1" / "model.py", "screen_detector_postprocessing"
)
# The harness compares Triton's numbers against these within: |a - e| <= atol + rtol * |e|.
PROBABILITY_TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}


def to_uint8(image: train.FloatImage) -> npt.NDArray[np.uint8]:
    pixels: npt.NDArray[np.uint8] = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels


def png(image: train.FloatImage, mode: str = "RGB", size: tuple[int, int] | None = None) -> bytes:
    pil = Image.fromarray(to_uint8(image), "RGB")
    if size is not None:
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.convert(mode).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def jpeg(image: train.FloatImage, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def screen(seed: int, height: int, width: int) -> train.FloatImage:
    return train.screen_photo(np.random.default_rng(seed), height, width)


def scene(seed: int, height: int, width: int) -> train.FloatImage:
    return train.natural_scene(np.random.default_rng(seed), height, width)


@dataclass(frozen=True)
class ImageFile:
    name: str
    make: Callable[[], bytes]


IMAGES = [
    ImageFile("screen_photo.png", lambda: png(screen(101, 60, 80))),
    ImageFile("screen_photo.jpg", lambda: jpeg(screen(102, 90, 120))),
    ImageFile("natural_scene.jpg", lambda: jpeg(scene(201, 90, 120))),
    ImageFile("grayscale_screen.png", lambda: png(screen(103, 80, 80), mode="L")),
    ImageFile("tiny_scene.png", lambda: png(scene(202, 48, 64), size=(8, 6))),
]

# case name -> (description, image files sent as one request, label a human expects or None)
CASES: dict[str, tuple[str, list[str], list[str] | None]] = {
    "screen_photo_png": (
        "PNG photo of a monitor with scanlines in a dim room",
        ["screen_photo.png"],
        ["screen"],
    ),
    "screen_photo_jpeg": (
        "JPEG photo of a display with a pixel grid or moire",
        ["screen_photo.jpg"],
        ["screen"],
    ),
    "natural_scene_jpeg": (
        "JPEG photo without a screen: smooth gradients, soft shapes, grain",
        ["natural_scene.jpg"],
        ["not_screen"],
    ),
    "grayscale_png": (
        "8-bit grayscale PNG (mode L) of a screen photo: preprocessing converts it to RGB",
        ["grayscale_screen.png"],
        None,
    ),
    "tiny_image": (
        "8x6 pixel PNG: preprocessing upsamples it to 64x64 without failing",
        ["tiny_scene.png"],
        None,
    ),
    "batch_of_two": (
        "two images in one request (batch dimension 2): a screen and a natural scene",
        ["screen_photo.png", "natural_scene.jpg"],
        ["screen", "not_screen"],
    ),
}


def reference(images: list[bytes]) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]:
    """The ensemble without Triton: preprocessing -> onnxruntime -> postprocessing."""
    import onnxruntime

    batch = np.array([[data] for data in images], dtype=np.object_)
    pixels = train.preprocessing.preprocess_batch(batch)
    session = onnxruntime.InferenceSession(str(train.ONNX_PATH), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"pixels": pixels})
    labels = postprocessing.load_labels(str(train.LABELS_PATH))
    label, probability = postprocessing.postprocess(logits, labels)
    return label, probability


def write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for image in IMAGES:
        write_atomically(FIXTURES / image.name, image.make())
    for name, (description, files, human_labels) in CASES.items():
        label, probability = reference([(FIXTURES / f).read_bytes() for f in files])
        labels = json_values(label, "BYTES")
        if human_labels is not None and labels != human_labels:
            raise SystemExit(f"{name}: the model says {labels}, the case expects {human_labels}")
        shape = [len(files), 1]
        case = {
            "description": description,
            "inputs": {"IMAGE": {"datatype": "BYTES", "shape": shape, "files": files}},
            "expected": {
                "LABEL": {"datatype": "BYTES", "shape": shape, "data": labels},
                "PROBABILITY": {
                    "datatype": "FP32",
                    "shape": shape,
                    # float32 values as their shortest repr, as `mmetools fixtures regen` writes
                    "data": json_values(probability, "FP32"),
                    **PROBABILITY_TOLERANCE,
                },
            },
        }
        write_fixture(FIXTURES / f"{name}.json", case)
        print(f"{name}: {labels} {[round(float(p), 4) for p in probability[:, 0]]}")


if __name__ == "__main__":
    main()
