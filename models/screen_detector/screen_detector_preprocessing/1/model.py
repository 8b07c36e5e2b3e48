"""screen_detector_preprocessing: encoded image bytes -> normalized RGB pixels.

IMAGE  TYPE_STRING [1]        one encoded image (PNG, JPEG, ... anything Pillow decodes)
PIXELS TYPE_FP32   [3, 64, 64] RGB, channels first, ImageNet mean/std normalization

The module-level functions are pure (no Triton), so train.py, the fixture reference run and the
unit tests use exactly the code Triton runs.
"""

from __future__ import annotations

import io

from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SIZE = 64
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Images with transparency are composited over white, as a browser or viewer shows them.
BACKGROUND = (255, 255, 255)
INPUT_NAME = "IMAGE"
OUTPUT_NAME = "PIXELS"


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes to an 8-bit RGB image, EXIF orientation applied."""
    if not data:
        raise ImageDecodeError("empty input (0 bytes), expected an encoded image")
    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()  # Pillow decodes lazily: truncated files fail here, not in open()
        image = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError as e:
        # Pillow's own message shows a BytesIO repr; the first bytes say more about what came in.
        raise ImageDecodeError(
            f"not a decodable image ({len(data)} bytes, starting {data[:8].hex(' ')}): "
            "no known image format"
        ) from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # truncated or corrupt data; broken PNG chunks raise SyntaxError
        raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {e}") from e
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16-bit grayscale is scaled, transparency composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale PNGs decode as I;16 or I (0..65535); Pillow cannot convert those to RGB.
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_image(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Squash to size x size (aspect ratio not kept: the detector sees the whole frame)."""
    return image.resize((size, size), resample=Image.Resampling.BILINEAR)


def to_pixels(image: Image.Image) -> npt.NDArray[np.float32]:
    """RGB image -> float32 [3, H, W], scaled to [0, 1] then normalized with MEAN/STD."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    normalized = (rgb - MEAN) / STD
    return np.ascontiguousarray(normalized.transpose(2, 0, 1), dtype=np.float32)


def preprocess_image(data: bytes) -> npt.NDArray[np.float32]:
    """Encoded image bytes -> PIXELS [3, 64, 64] float32."""
    return to_pixels(resize_image(decode_image(data)))


def preprocess_batch(images: npt.NDArray[np.object_]) -> npt.NDArray[np.float32]:
    """IMAGE [B, 1] (object array of bytes) -> PIXELS [B, 3, 64, 64]; errors name the row."""
    if images.ndim != 2 or images.shape[1] != 1:
        raise ValueError(f"{INPUT_NAME}: expected shape [batch, 1], got {list(images.shape)}")
    pixels = np.empty((images.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for row, item in enumerate(images[:, 0]):
        data = item if isinstance(item, bytes) else bytes(item)
        try:
            pixels[row] = preprocess_image(data)
        except ImageDecodeError as e:
            raise ImageDecodeError(f"{INPUT_NAME}[{row}]: {e}") from e
    return pixels


class TritonPythonModel:
    """Triton Python backend entry point."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model_name = args["model_name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            try:
                pixels = preprocess_batch(images)
            except ValueError as e:
                # One bad request fails alone; the other requests of the batch still get answers.
                error = pb_utils.TritonError(f"{self.model_name}: {e}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            output = pb_utils.Tensor(OUTPUT_NAME, pixels)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
