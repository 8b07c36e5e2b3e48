"""The intent classifier example: tokenizer and postprocessing, TorchScript weights, fixtures."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

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

MODEL = "intent_classifier"
FOLDER = MODELS_DIR / MODEL
WEIGHTS = FOLDER / "intent_classifier_inferencer" / "1" / "model.pt"
VOCAB = FOLDER / "intent_classifier_preprocessing" / "1" / "vocab.txt"
LABELS = FOLDER / "intent_classifier_postprocessing" / "1" / "labels.txt"
pre = load_step(MODEL, "intent_classifier_preprocessing")
post = load_step(MODEL, "intent_classifier_postprocessing")

TINY_VOCAB = {"<pad>": 0, "<unk>": 1, "play": 2, "some": 3, "jazz": 4, "what's": 5}


def texts(*items: bytes) -> npt.NDArray[np.object_]:
    batch = np.empty((len(items), 1), dtype=np.object_)
    for row, item in enumerate(items):
        batch[row, 0] = item
    return batch


@pytest.fixture(scope="module")
def network(example_weights: None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: what libtorch serves
        module: torch.jit.ScriptModule = torch.jit.load(str(WEIGHTS))  # type: ignore[no-untyped-call, unused-ignore]
    return module.eval()


# --- tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Play some JAZZ!", ["play", "some", "jazz"]),
        ("What's the weather, in São Paulo?", ["what's", "the", "weather", "in", "são", "paulo"]),
        ("ＰＬＡＹ　ｊａｚｚ", ["play", "jazz"]),  # full-width letters and space (NFKC)
        ("wake me at 7:30 am", ["wake", "me", "at", "7", "30", "am"]),
        ("snake_case -- ...", ["snake", "case"]),
        ("", []),
        ("   \t\n", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert pre.tokenize(text) == tokens


def test_encode_maps_unknown_words_and_pads() -> None:
    ids = pre.encode("play some disco", TINY_VOCAB)
    assert ids.dtype == np.int64 and ids.shape == (32,)
    assert ids[:4].tolist() == [2, 3, pre.UNK_ID, pre.PAD_ID]
    assert not ids[3:].any()


def test_encode_empty_text_is_all_padding() -> None:
    assert pre.encode("", TINY_VOCAB).tolist() == [pre.PAD_ID] * 32


def test_encode_truncates_to_32_tokens() -> None:
    ids = pre.encode(" ".join(["play"] * 40 + ["jazz"]), TINY_VOCAB)
    assert ids.tolist() == [2] * 32  # the 41st word never makes it


def test_load_vocab_of_the_repository() -> None:
    vocab = pre.load_vocab(str(VOCAB))
    assert vocab["<pad>"] == 0 and vocab["<unk>"] == 1
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert {"weather", "alarm", "play", "hello", "bye", "order"} <= vocab.keys()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the first two lines must be <pad> and <unk>"),
        ("<unk>\n<pad>\n", "the first two lines must be <pad> and <unk>"),
        ("<pad>\n<unk>\nplay\nplay\n", "4: duplicate token 'play'"),
        ("<pad>\n<unk>\n\nplay\n", "3: empty token or surrounding whitespace"),
        ("<pad>\n<unk>\nplay \n", "3: empty token or surrounding whitespace"),
    ],
)
def test_load_vocab_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        pre.load_vocab(str(path))
    separator = ":" if message[0].isdigit() else ": "
    assert str(raised.value) == f"{path}{separator}{message}"


def test_preprocess_batch_decodes_utf8_and_names_the_bad_row() -> None:
    ids = pre.preprocess_batch(texts("play jazz".encode(), "what's".encode()), TINY_VOCAB)
    assert ids.shape == (2, 32) and ids.dtype == np.int64
    assert ids[:, :2].tolist() == [[2, 4], [5, 0]]
    with pytest.raises(ValueError) as raised:
        pre.preprocess_batch(texts(b"play", b"caf\xe9"), TINY_VOCAB)
    assert str(raised.value) == (
        "TEXT[1]: not UTF-8 text: byte 0xe9 at position 3 (unexpected end of data)"
    )


def test_preprocess_batch_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError) as raised:
        pre.preprocess_batch(np.array([b"a"], dtype=np.object_), TINY_VOCAB)
    assert str(raised.value) == "TEXT: expected shape [batch, 1], got [1]"


def test_preprocessing_execute_reads_vocab_from_its_version_folder_fake_pb_utils() -> None:
    step = pre.TritonPythonModel()
    step.initialize(triton_args(MODEL, "intent_classifier_preprocessing"))
    good, bad = step.execute([request(TEXT=texts(b"hello", b"")), request(TEXT=texts(b"\xff"))])
    vocab = pre.load_vocab(str(VOCAB))
    assert good.output("TOKEN_IDS")[:, 0].tolist() == [vocab["hello"], pre.PAD_ID]
    assert bad.error.message() == (
        "intent_classifier_preprocessing: TEXT[0]: not UTF-8 text: byte 0xff at position 0 "
        "(invalid start byte)"
    )


# --- postprocessing --------------------------------------------------------------------------


def test_postprocess_picks_the_intent_and_its_softmax_confidence() -> None:
    labels = post.load_labels(str(LABELS))
    logits = np.zeros((2, len(labels)), dtype=np.float32)
    logits[0, labels.index("greeting")] = 3.0
    logits[1, labels.index("set_alarm")] = 1000.0  # no overflow
    intent, confidence = post.postprocess(logits, labels)
    assert intent[:, 0].tolist() == [b"greeting", b"set_alarm"]
    expected_first = np.exp(3.0) / (np.exp(3.0) + len(labels) - 1)
    assert np.allclose(confidence[:, 0], [expected_first, 1.0])


def test_postprocessing_execute_fake_pb_utils() -> None:
    step = post.TritonPythonModel()
    step.initialize(triton_args(MODEL, "intent_classifier_postprocessing"))
    (response,) = step.execute([request(LOGITS=np.zeros((1, 6), dtype=np.float32))])
    first_label = LABELS.read_text().split()[0]
    assert response.output("INTENT").tolist() == [[first_label.encode()]]  # ties: the first
    assert np.allclose(response.output("CONFIDENCE"), [[1 / 6]])


# --- the exported weights --------------------------------------------------------------------


def test_torchscript_signature_matches_the_configs(network: torch.jit.ScriptModule) -> None:
    inferencer = load_config(FOLDER / "intent_classifier_inferencer" / "config.pbtxt")
    (token_dims,) = [list(i.dims) for i in inferencer.input if i.name == "INPUT__0"]
    (logit_dims,) = [list(o.dims) for o in inferencer.output if o.name == "OUTPUT__0"]
    assert token_dims == [pre.MAX_TOKENS]
    assert logit_dims == [len(post.load_labels(str(LABELS)))]
    ids = torch.randint(0, len(pre.load_vocab(str(VOCAB))), (8, pre.MAX_TOKENS))
    with torch.no_grad():
        logits = network(ids)
    assert logits.dtype == torch.float32 and list(logits.shape) == [8, *logit_dims]
    with torch.no_grad():
        single = torch.cat([network(row[None]) for row in ids])
    assert torch.allclose(logits, single, atol=1e-6)


def test_torchscript_file_is_small_and_holds_no_machine_paths(example_weights: None) -> None:
    assert WEIGHTS.stat().st_size < 1_000_000
    with zipfile.ZipFile(WEIGHTS) as archive:
        names = archive.namelist()
        assert not [n for n in names if n.endswith(".debug_pkl")]
        for name in names:
            # debug records would name the exporting script and torch's sources by absolute path
            assert b"train.py" not in archive.read(name), name
            assert b"site-packages" not in archive.read(name), name


def test_empty_text_does_not_divide_by_zero(network: torch.jit.ScriptModule) -> None:
    with torch.no_grad():
        logits = network(torch.zeros((1, pre.MAX_TOKENS), dtype=torch.int64))
    assert torch.isfinite(logits).all()


CASES = fixture_cases(MODEL)


def test_fixture_cases_cover_the_edge_cases() -> None:
    names = {case.name for case in CASES}
    assert {"empty_text", "out_of_vocabulary", "long_text_truncated"} <= names
    assert 4 <= len(CASES) <= 6
    (long_case,) = [c for c in CASES if c.name == "long_text_truncated"]
    assert len(pre.tokenize(long_case.document["inputs"]["TEXT"]["data"][0])) > pre.MAX_TOKENS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_weights_reproduce_the_fixture_expectations(
    case: Case, network: torch.jit.ScriptModule
) -> None:
    token_ids = pre.preprocess_batch(case.input_bytes("TEXT"), pre.load_vocab(str(VOCAB)))
    with torch.no_grad():
        logits = network(torch.from_numpy(token_ids)).numpy()
    intent, confidence = post.postprocess(logits, post.load_labels(str(LABELS)))
    assert_bytes("INTENT", intent, case.expected("INTENT"))
    assert_close("CONFIDENCE", confidence, case.expected("CONFIDENCE"))
