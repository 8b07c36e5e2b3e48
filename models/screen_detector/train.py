"""Train the screen detector on synthetic images and export it to ONNX.

    .venv/bin/python models/screen_detector/train.py

Writes screen_detector_inferencer/1/model.onnx (then: `dvc add` + `dvc push`, see README.md).
Everything is seeded; on the same machine and library versions two runs write identical bytes.

The data is synthetic: "screen" images are photos of a display (a bright bezelled rectangle in a
dim room, with UI blocks and display artifacts: scanlines, a pixel grid or moire bands);
"not_screen" images are natural-looking smooth scenes (gradients, soft blobs, solid objects,
texture and grain). Each image is encoded as PNG or JPEG and then run through the exact
preprocessing code Triton runs (screen_detector_preprocessing/1/model.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn

HERE = Path(__file__).resolve().parent
ONNX_PATH = HERE / "screen_detector_inferencer" / "1" / "model.onnx"
LABELS_PATH = HERE / "screen_detector_postprocessing" / "1" / "labels.txt"
LABELS = ("not_screen", "screen")  # index = network output index
OPSET = 17
SEED = 20240611
FloatImage = npt.NDArray[np.float32]  # RGB in [0, 1], [H, W, 3] (or [H, W] for fields)


def load_step_module(path: Path, name: str) -> types.ModuleType:
    """Import a Python step's model.py outside Triton (its pure functions need no pb_utils)."""
    placeholder = types.ModuleType("triton_python_backend_utils")
    previous = sys.modules.setdefault("triton_python_backend_utils", placeholder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is placeholder:
            del sys.modules["triton_python_backend_utils"]
    return module


preprocessing = load_step_module(
    HERE / "screen_detector_preprocessing" / "1" / "model.py", "screen_detector_preprocessing"
)


# --- synthetic images (float RGB arrays in [0, 1], shape [H, W, 3]) ---------------------------


def smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> FloatImage:
    """Low-frequency noise in [0, 1]: a random coarse grid upsampled with bicubic interpolation."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    field = Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(field, dtype=np.float32), 0.0, 1.0)


def natural_scene(rng: np.random.Generator, height: int, width: int) -> FloatImage:
    """A smooth 'photo': two-colour gradient, soft blobs, a few solid objects, texture, grain."""
    top, bottom = rng.random(3), rng.random(3)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    mix = 0.6 * t + 0.4 * smooth_field(rng, height, width, int(rng.integers(2, 5)))[:, :, None]
    image = top * (1.0 - mix) + bottom * mix
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(1, 5))):  # soft blobs: foliage, faces, clouds
        cy, cx = rng.random() * height, rng.random() * width
        sy, sx = (0.08 + 0.3 * rng.random()) * height, (0.08 + 0.3 * rng.random()) * width
        weight = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))[:, :, None]
        image = image * (1.0 - weight) + rng.random(3) * weight
    for _ in range(int(rng.integers(0, 3))):  # hard-edged but untextured objects: books, doors
        y0, x0 = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
        y1 = int(rng.integers(y0 + 4, min(height, y0 + height // 2) + 1))
        x1 = int(rng.integers(x0 + 4, min(width, x0 + width // 2) + 1))
        image[y0:y1, x0:x1] = rng.random(3) * (0.4 + 0.6 * rng.random())
    texture = smooth_field(rng, height, width, int(rng.integers(8, 20))) - 0.5
    image = image + (0.05 + 0.15 * rng.random()) * texture[:, :, None]
    image = image + rng.normal(0.0, 0.03 * rng.random(), image.shape)
    scene: FloatImage = np.clip(image, 0.0, 1.0).astype(np.float32)
    return scene


def display_pattern(rng: np.random.Generator, height: int, width: int) -> FloatImage:
    """Multiplicative display artifacts: scanlines, a pixel grid or moire, period ~2.5-6 px at 64 px."""
    scale = height / preprocessing.IMAGE_SIZE  # periods are chosen in the 64x64 output space
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(0, 3)
    amplitude = 0.12 + 0.25 * rng.random()
    period = (2.5 + 3.5 * rng.random()) * scale
    phase = rng.random() * 2 * np.pi
    if kind == 0:  # scanlines
        pattern = np.sin(2 * np.pi * yy / period + phase)
    elif kind == 1:  # pixel grid
        pattern = 0.5 * (np.sin(2 * np.pi * yy / period) + np.sin(2 * np.pi * xx / period + phase))
    else:  # moire: a slightly rotated fine grating beating against the sensor grid
        angle = (rng.random() - 0.5) * 0.6
        freq = 1.0 / period
        pattern = np.cos(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        pattern = pattern * (0.6 + 0.4 * np.cos(2 * np.pi * yy / (6 * period)))
    factor: FloatImage = (1.0 + amplitude * pattern).astype(np.float32)
    return factor


def screen_photo(rng: np.random.Generator, height: int, width: int) -> FloatImage:
    """A photo of a display: dim room, dark bezel, bright content with UI blocks and artifacts."""
    image = natural_scene(rng, height, width) * (0.25 + 0.5 * rng.random())
    sh = int(height * (0.4 + 0.55 * rng.random()))
    sw = int(width * (0.4 + 0.55 * rng.random()))
    y0, x0 = int(rng.integers(0, height - sh + 1)), int(rng.integers(0, width - sw + 1))
    bezel = max(1, int(min(sh, sw) * (0.02 + 0.05 * rng.random())))
    image[y0 : y0 + sh, x0 : x0 + sw] = 0.1 * rng.random()
    iy0, ix0, ih, iw = y0 + bezel, x0 + bezel, sh - 2 * bezel, sw - 2 * bezel
    content = np.empty((ih, iw, 3), dtype=np.float32)
    content[:] = 0.55 + 0.45 * rng.random(3)
    for _ in range(int(rng.integers(1, 6))):  # windows, images, toolbars
        by0, bx0 = int(rng.integers(0, max(1, ih - 4))), int(rng.integers(0, max(1, iw - 4)))
        by1 = int(rng.integers(by0 + 1, ih + 1))
        bx1 = int(rng.integers(bx0 + 1, iw + 1))
        content[by0:by1, bx0:bx1] = 0.2 + 0.8 * rng.random(3)
    for row in range(int(rng.integers(0, 8))):  # lines of text
        ty = int(rng.integers(0, ih))
        tx0 = int(rng.integers(0, max(1, iw // 2)))
        content[ty, tx0 : tx0 + int(rng.integers(2, max(3, iw // 2)))] *= 0.3
    content *= display_pattern(rng, ih, iw)[:, :, None]
    image[iy0 : iy0 + ih, ix0 : ix0 + iw] = content
    image = image + rng.normal(0.0, 0.02 * rng.random(), image.shape)
    photo: FloatImage = np.clip(image, 0.0, 1.0).astype(np.float32)
    return photo


def encode(image: FloatImage, rng: np.random.Generator) -> bytes:
    """Encode as PNG or JPEG (random quality) so training sees the codecs real clients send."""
    pil = Image.fromarray(np.rint(image * 255.0).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        pil.save(buffer, format="PNG")
    else:
        pil.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue()


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(64, 161)), int(rng.integers(64, 161))


def make_dataset(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced set of preprocessed images: PIXELS [N, 3, 64, 64] and labels [N] (1 = screen)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((count, 3, preprocessing.IMAGE_SIZE, preprocessing.IMAGE_SIZE), np.float32)
    labels = np.empty(count, dtype=np.int64)
    for i in range(count):
        label = i % 2
        height, width = random_size(rng)
        image = screen_photo(rng, height, width) if label else natural_scene(rng, height, width)
        pixels[i] = preprocessing.preprocess_image(encode(image, rng))
        labels[i] = label
    return torch.from_numpy(pixels), torch.from_numpy(labels)


# --- network ----------------------------------------------------------------------------------


class ScreenNet(nn.Module):
    """Three conv blocks and a linear head: ~7k parameters, 64x64 RGB in, 2 logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * 32, len(LABELS))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.features(pixels)
        # mean and max pooling: the artifacts are sometimes everywhere, sometimes in one corner
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        logits: torch.Tensor = self.head(pooled)
        return logits


def accuracy(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = model(pixels).argmax(dim=1)
    return float((predictions == labels).float().mean())


def train(epochs: int, train_count: int) -> tuple[ScreenNet, dict[str, float]]:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    train_x, train_y = make_dataset(train_count, SEED)
    test_x, test_y = make_dataset(600, SEED + 1)  # held out: different images, same generators
    data_seconds = time.monotonic() - started
    model = ScreenNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(SEED)
    batch_size = 64
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            # label smoothing keeps probabilities informative (not all 1.0) for fixtures and users
            loss = nn.functional.cross_entropy(
                model(train_x[index]), train_y[index], label_smoothing=0.1
            )
            loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
            optimizer.step()
            total += float(loss.detach()) * len(index)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}")
    metrics = {
        "train_accuracy": accuracy(model, train_x, train_y),
        "heldout_accuracy": accuracy(model, test_x, test_y),
        "data_seconds": data_seconds,
        "train_seconds": time.monotonic() - started - data_seconds,
    }
    return model.eval(), metrics


def export_onnx(model: nn.Module, path: Path) -> None:
    """ONNX with a dynamic batch axis; written to a temp file, then renamed into place."""
    example = torch.zeros(1, 3, preprocessing.IMAGE_SIZE, preprocessing.IMAGE_SIZE)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".model-", suffix=".onnx")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # the legacy exporter announces its deprecation; it is the one that needs no extras
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (example,),
                temp_name,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,  # the dynamo exporter needs onnxscript, which we do not ship
            )
        os.chmod(temp_name, 0o644)  # mkstemp creates 0600
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def check_export(model: nn.Module, path: Path) -> float:
    """Max |torch - onnxruntime| on a few held-out images; raises when the export is off."""
    import onnxruntime

    pixels, _ = make_dataset(16, SEED + 2)
    with torch.no_grad():
        expected = model(pixels).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(["logits"], {"pixels": pixels.numpy()})[0]
    error = float(np.abs(actual - expected).max())
    if error > 1e-4:
        raise SystemExit(f"{path}: onnxruntime differs from torch by {error}")
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-count", type=int, default=2000)
    args = parser.parse_args()
    # One thread: CPU kernels reduce in a fixed order, so reruns give the same weights.
    torch.set_num_threads(1)
    model, metrics = train(args.epochs, args.train_count)
    print(
        f"accuracy: train {metrics['train_accuracy']:.4f}, "
        f"held-out {metrics['heldout_accuracy']:.4f} "
        f"(data {metrics['data_seconds']:.1f}s, training {metrics['train_seconds']:.1f}s)"
    )
    export_onnx(model, ONNX_PATH)
    LABELS_PATH.write_text("".join(f"{label}\n" for label in LABELS), encoding="utf-8")
    error = check_export(model, ONNX_PATH)
    size = ONNX_PATH.stat().st_size
    print(f"wrote {ONNX_PATH.relative_to(HERE)} ({size} bytes, onnxruntime vs torch {error:.2e})")


if __name__ == "__main__":
    main()
