"""intent_classifier_preprocessing: UTF-8 text -> fixed-length token ids.

TEXT      TYPE_STRING [1]   one utterance, UTF-8
TOKEN_IDS TYPE_INT64  [32]  vocabulary ids (1/vocab.txt, one token per line, id = line number),
                            truncated to 32 tokens, padded with <pad> (0); unknown words -> <unk> (1)

The module-level functions are pure (no Triton), so train.py, the fixture reference run and the
unit tests use exactly the code Triton runs.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping

from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils

MAX_TOKENS = 32
PAD_TOKEN, PAD_ID = "<pad>", 0
UNK_TOKEN, UNK_ID = "<unk>", 1
VOCAB_FILE = "vocab.txt"
INPUT_NAME = "TEXT"
OUTPUT_NAME = "TOKEN_IDS"
# Words, numbers and contractions ("what's" stays one token); punctuation is dropped.
TOKEN_PATTERN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def load_vocab(path: str) -> dict[str, int]:
    """Read vocab.txt: one token per line, the id is the line number; <pad> and <unk> first."""
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
        raise ValueError(f"{path}: the first two lines must be {PAD_TOKEN} and {UNK_TOKEN}")
    vocab: dict[str, int] = {}
    for line_number, token in enumerate(tokens, start=1):
        if not token or token != token.strip():
            raise ValueError(f"{path}:{line_number}: empty token or surrounding whitespace")
        if token in vocab:
            raise ValueError(f"{path}:{line_number}: duplicate token {token!r}")
        vocab[token] = line_number - 1
    return vocab


def normalize(text: str) -> str:
    """Unicode NFKC and case folding, so 'ＨＥＬＬＯ' and 'hello' are the same word."""
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(normalize(text))


def encode(
    text: str, vocab: Mapping[str, int], max_tokens: int = MAX_TOKENS
) -> npt.NDArray[np.int64]:
    """Token ids int64 [max_tokens]: the first max_tokens words, <unk> for unknown, <pad> after."""
    ids = np.full(max_tokens, PAD_ID, dtype=np.int64)
    tokens = tokenize(text)[:max_tokens]
    ids[: len(tokens)] = [vocab.get(token, UNK_ID) for token in tokens]
    return ids


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"not UTF-8 text: byte 0x{data[e.start]:02x} at position {e.start} ({e.reason})"
        ) from e


def preprocess_batch(
    texts: npt.NDArray[np.object_], vocab: Mapping[str, int]
) -> npt.NDArray[np.int64]:
    """TEXT [B, 1] (object array of bytes) -> TOKEN_IDS [B, 32]; errors name the row."""
    if texts.ndim != 2 or texts.shape[1] != 1:
        raise ValueError(f"{INPUT_NAME}: expected shape [batch, 1], got {list(texts.shape)}")
    token_ids = np.empty((texts.shape[0], MAX_TOKENS), dtype=np.int64)
    for row, item in enumerate(texts[:, 0]):
        try:
            text = item if isinstance(item, str) else decode_text(bytes(item))
        except ValueError as e:
            raise ValueError(f"{INPUT_NAME}[{row}]: {e}") from e
        token_ids[row] = encode(text, vocab)
    return token_ids


class TritonPythonModel:
    """Triton Python backend entry point."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model_name = args["model_name"]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.vocab = load_vocab(os.path.join(version_dir, VOCAB_FILE))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            try:
                token_ids = preprocess_batch(texts, self.vocab)
            except ValueError as e:
                # One bad request fails alone; the other requests of the batch still get answers.
                error = pb_utils.TritonError(f"{self.model_name}: {e}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT_NAME, token_ids)])
            )
        return responses
