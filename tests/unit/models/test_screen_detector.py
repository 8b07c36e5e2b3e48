"""The screen detector example: its Python steps' functions, its ONNX weights, its fixtures."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
import pytest
from PIL import Image

from support.models.model_support import (
    MODELS_DIR,
    Case,
    assert_bytes,
    assert_close,
    fixture_cases,
    load_step,
    request,
    triton_args,
)
from mmetools.model.config import load_config

MODEL = "screen_detector"
FOLDER = MODELS_DIR / MODEL
WEIGHTS = FOLDER / "screen_detector_inferencer" / "1" / "model.onnx"
pre = load_step(MODEL, "screen_detector_preprocessing")
post = load_step(MODEL, "screen_detector_postprocessing")


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 20, height: int = 10) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    rgb = np.stack(np.broadcast_arrays(x[None, :], x[::-1][None, :], np.full((1, width), 90)), -1)
    return Image.fromarray(np.repeat(rgb, height, axis=0).astype(np.uint8), "RGB")


def as_batch(*items: bytes) -> npt.NDArray[np.object_]:
    batch = np.empty((len(items), 1), dtype=np.object_)
    for row, item in enumerate(items):
        batch[row, 0] = item
    return batch


@pytest.fixture(scope="module")
def session(example_weights: None) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(WEIGHTS), providers=["CPUExecutionProvider"])


# --- decoding --------------------------------------------------------------------------------


def test_decode_png_is_lossless_rgb() -> None:
    image = gradient()
    decoded = pre.decode_image(encoded(image, "PNG"))
    assert decoded.mode == "RGB" and decoded.size == (20, 10)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_decode_jpeg_gives_rgb_close_to_the_original() -> None:
    image = gradient()
    decoded = pre.decode_image(encoded(image, "JPEG", quality=95))
    assert decoded.mode == "RGB" and decoded.size == (20, 10)
    difference = np.abs(np.asarray(decoded, np.int16) - np.asarray(image, np.int16))
    assert difference.mean() < 4


def test_decode_grayscale_png_repeats_the_gray_in_each_channel() -> None:
    gray = gradient().convert("L")
    decoded = np.asarray(pre.decode_image(encoded(gray, "PNG")))
    assert decoded.shape == (10, 20, 3)
    for channel in range(3):
        assert np.array_equal(decoded[:, :, channel], np.asarray(gray))


def test_decode_16_bit_grayscale_png_scales_to_8_bit() -> None:
    wide = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    data = encoded(Image.fromarray(wide), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # Pillow's 16-bit modes
    decoded = np.asarray(pre.decode_image(data))
    assert decoded[0, :, 0].tolist() == [0, 128, 255]


def test_decode_composites_transparency_over_white() -> None:
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 1] = [10, 20, 30, 255]  # opaque pixel stays; the transparent black one turns white
    decoded = np.asarray(pre.decode_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert decoded.tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_decode_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": phones write this for portrait photos
    data = encoded(gradient(20, 10), "JPEG", exif=exif.tobytes())
    assert pre.decode_image(data).size == (10, 20)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input (0 bytes), expected an encoded image"),
        (
            b"GIF87a?? not really",
            "not a decodable image (19 bytes, starting 47 49 46 38 37 61 3f 3f): "
            "no known image format",
        ),
        (
            b"plain text",
            "not a decodable image (10 bytes, starting 70 6c 61 69 6e 20 74 65): "
            "no known image format",
        ),
    ],
)
def test_undecodable_bytes_give_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(pre.ImageDecodeError) as raised:
        pre.decode_image(data)
    assert str(raised.value) == message


def test_truncated_png_gives_a_clear_error() -> None:
    data = encoded(gradient(), "PNG")[:60]
    with pytest.raises(pre.ImageDecodeError) as raised:
        pre.decode_image(data)
    assert str(raised.value).startswith("not a decodable image (60 bytes): ")


# --- resize and normalize --------------------------------------------------------------------


def test_resize_squashes_to_64_square() -> None:
    assert pre.resize_image(gradient(128, 32)).size == (64, 64)
    assert pre.resize_image(gradient(3, 2)).size == (64, 64)  # tiny images are upsampled


def test_preprocess_image_shape_dtype_and_normalization() -> None:
    white = pre.preprocess_image(encoded(Image.new("RGB", (100, 50), "white"), "PNG"))
    black = pre.preprocess_image(encoded(Image.new("RGB", (7, 7), "black"), "PNG"))
    assert white.shape == (3, 64, 64) and white.dtype == np.float32
    assert white.flags["C_CONTIGUOUS"]
    for channel in range(3):
        high = (1.0 - pre.MEAN[channel]) / pre.STD[channel]
        low = -pre.MEAN[channel] / pre.STD[channel]
        assert np.allclose(white[channel], high) and np.allclose(black[channel], low)
    pixels = pre.preprocess_image(encoded(gradient(), "PNG"))
    lows, highs = -pre.MEAN / pre.STD, (1 - pre.MEAN) / pre.STD
    assert np.all(pixels >= lows[:, None, None] - 1e-6)
    assert np.all(pixels <= highs[:, None, None] + 1e-6)


def test_preprocess_batch_keeps_rows_and_names_the_bad_one() -> None:
    good = encoded(gradient(), "PNG")
    batch = pre.preprocess_batch(as_batch(good, encoded(gradient(), "JPEG")))
    assert batch.shape == (2, 3, 64, 64)
    assert np.array_equal(batch[0], pre.preprocess_image(good))
    with pytest.raises(pre.ImageDecodeError) as raised:
        pre.preprocess_batch(as_batch(good, b"junk"))
    assert str(raised.value) == (
        "IMAGE[1]: not a decodable image (4 bytes, starting 6a 75 6e 6b): no known image format"
    )


def test_preprocess_batch_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError) as raised:
        pre.preprocess_batch(np.array([b"a", b"b"], dtype=np.object_))
    assert str(raised.value) == "IMAGE: expected shape [batch, 1], got [2]"


def test_preprocessing_execute_answers_each_request_fake_pb_utils() -> None:
    step = pre.TritonPythonModel()
    step.initialize(triton_args(MODEL, "screen_detector_preprocessing"))
    png = encoded(gradient(), "PNG")
    good, bad = step.execute([request(IMAGE=as_batch(png, png)), request(IMAGE=as_batch(b"junk"))])
    assert good.error is None and good.output("PIXELS").shape == (2, 3, 64, 64)
    assert bad.output_tensors == []
    assert bad.error.message() == (
        "screen_detector_preprocessing: IMAGE[0]: not a decodable image "
        "(4 bytes, starting 6a 75 6e 6b): no known image format"
    )


# --- postprocessing --------------------------------------------------------------------------


def test_softmax_is_stable_and_normalized() -> None:
    probabilities = post.softmax(np.array([[1000.0, -1000.0], [0.0, 0.0]], dtype=np.float32))
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities, [[1.0, 0.0], [0.5, 0.5]])
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_postprocess_maps_the_best_class_to_its_label() -> None:
    logits = np.array([[0.0, 2.0], [3.0, 0.0]], dtype=np.float32)
    label, probability = post.postprocess(logits, ("not_screen", "screen"))
    assert label.shape == (2, 1) and label.dtype == np.object_
    assert label[:, 0].tolist() == [b"screen", b"not_screen"]
    assert probability.shape == (2, 1) and probability.dtype == np.float32
    assert np.allclose(probability[:, 0], [1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-3.0))])


def test_postprocess_rejects_logits_of_the_wrong_width() -> None:
    with pytest.raises(ValueError) as raised:
        post.postprocess(np.zeros((1, 3), dtype=np.float32), ("not_screen", "screen"))
    assert str(raised.value) == "LOGITS: expected shape [batch, 2], got [1, 3]"


def test_labels_file_matches_the_network(tmp_path: Path) -> None:
    labels = post.load_labels(str(FOLDER / "screen_detector_postprocessing" / "1" / "labels.txt"))
    assert labels == ("not_screen", "screen")
    one = tmp_path / "labels.txt"
    one.write_text("screen\n")
    with pytest.raises(ValueError) as raised:
        post.load_labels(str(one))
    assert str(raised.value) == f"{one}: expected at least 2 labels, one per line, found 1"


def test_postprocessing_execute_fake_pb_utils() -> None:
    step = post.TritonPythonModel()
    step.initialize(triton_args(MODEL, "screen_detector_postprocessing"))
    (response,) = step.execute([request(LOGITS=np.array([[0.0, 2.0]], dtype=np.float32))])
    assert response.output("LABEL").tolist() == [[b"screen"]]
    assert np.allclose(response.output("PROBABILITY"), [[1 / (1 + np.exp(-2.0))]])


# --- the exported weights --------------------------------------------------------------------


def test_onnx_signature_matches_the_inferencer_config(example_weights: None) -> None:
    config = load_config(FOLDER / "screen_detector_inferencer" / "config.pbtxt")
    graph = onnx.load(str(WEIGHTS))
    onnx.checker.check_model(graph)
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [17]

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    (graph_input,), (graph_output,) = graph.graph.input, graph.graph.output
    assert graph_input.name == config.input[0].name == "pixels"
    assert dims(graph_input) == ["batch", *config.input[0].dims]  # dynamic batch axis
    assert graph_output.name == config.output[0].name == "logits"
    assert dims(graph_output) == ["batch", *config.output[0].dims]
    assert WEIGHTS.stat().st_size < 1_000_000


def test_onnx_batch_of_eight_equals_single_runs(session: onnxruntime.InferenceSession) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(8, 3, 64, 64)).astype(np.float32)
    (batched,) = session.run(["logits"], {"pixels": pixels})
    assert batched.shape == (8, 2)
    singles = np.concatenate([session.run(["logits"], {"pixels": p[None]})[0] for p in pixels])
    assert np.allclose(batched, singles, atol=1e-5)


CASES = fixture_cases(MODEL)


def test_fixture_cases_cover_the_edge_cases() -> None:
    assert 4 <= len(CASES) <= 6
    for case in CASES:
        for name in case.document["inputs"]["IMAGE"].get("files", []):
            assert (case.path.parent / name).stat().st_size < 16_000, name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_weights_reproduce_the_fixture_expectations(
    case: Case, session: onnxruntime.InferenceSession
) -> None:
    pixels = pre.preprocess_batch(case.input_bytes("IMAGE"))
    (logits,) = session.run(["logits"], {"pixels": pixels})
    labels = post.load_labels(str(FOLDER / "screen_detector_postprocessing" / "1" / "labels.txt"))
    label, probability = post.postprocess(logits, labels)
    assert_bytes("LABEL", label, case.expected("LABEL"))
    assert_close("PROBABILITY", probability, case.expected("PROBABILITY"))
