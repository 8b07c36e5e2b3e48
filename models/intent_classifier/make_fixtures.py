"""Write the fixture cases of the intent classifier: input texts and expected outputs.

    .venv/bin/python models/intent_classifier/make_fixtures.py

The expected outputs are computed by running the ensemble's steps directly in Python: the
preprocessing model.py (with 1/vocab.txt), the TorchScript weights with torch, the
postprocessing model.py. Needs the weights (`mmetools fetch models/intent_classifier`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from mmetools.model.cases import json_values, write_fixture

import train  # this folder's train.py: the same generators, paths and step modules

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "tests" / "fixtures"
postprocessing = train.load_step_module(
    HERE / "intent_classifier_postprocessing" / "1" / "model.py",
    "intent_classifier_postprocessing",
)
# The harness compares Triton's numbers against these within: |a - e| <= atol + rtol * |e|.
CONFIDENCE_TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}

LONG_TEXT = (
    "please set an alarm for 7 am tomorrow because i have an early flight and i really "
    "cannot miss it so wake me up at 7 am and do not let me "
    # everything from here on is past token 32 and is cut off by the preprocessing
    "and afterwards play some jazz music by miles davis play my jazz playlist play songs"
)

# case name -> (description, texts sent as one request, intents a human expects or None)
CASES: dict[str, tuple[str, list[str], list[str] | None]] = {
    "greeting": ("a plain greeting with punctuation", ["Hello there, good morning!"], ["greeting"]),
    "weather_unknown_city": (
        "weather question naming a city the vocabulary has never seen (<unk>)",
        ["What's the weather in Reykjavik tomorrow?"],
        ["check_weather"],
    ),
    "long_text_truncated": (
        "an alarm request longer than 32 tokens; the music words after token 32 are cut off",
        [LONG_TEXT],
        ["set_alarm"],
    ),
    "empty_text": (
        "empty string: all padding, the network sees a zero vector; low confidence",
        [""],
        None,
    ),
    "out_of_vocabulary": (
        "only unknown words: every token is <unk>; low confidence",
        ["xyzzy plugh frobnicate quux"],
        None,
    ),
    "batch_of_three": (
        "three texts in one request (batch dimension 3), one in full-width Unicode (NFKC)",
        ["ＰＬＡＹ some jazz", "order a pizza", "bye for now"],
        ["play_music", "order_food", "goodbye"],
    ),
}


def reference(texts: list[str]) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]:
    """The ensemble without Triton: preprocessing -> torch.jit -> postprocessing."""
    vocab = train.preprocessing.load_vocab(str(train.VOCAB_PATH))
    batch = np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)
    token_ids = train.preprocessing.preprocess_batch(batch, vocab)
    model = torch.jit.load(str(train.WEIGHTS_PATH))  # type: ignore[no-untyped-call, unused-ignore]
    with torch.no_grad():
        logits = model(torch.from_numpy(token_ids)).numpy()
    labels = postprocessing.load_labels(str(train.LABELS_PATH))
    intent, confidence = postprocessing.postprocess(logits, labels)
    return intent, confidence


def main() -> None:
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, (description, texts, human_intents) in CASES.items():
        intent, confidence = reference(texts)
        intents = json_values(intent, "BYTES")
        if human_intents is not None and intents != human_intents:
            raise SystemExit(f"{name}: the model says {intents}, the case expects {human_intents}")
        shape = [len(texts), 1]
        case = {
            "description": description,
            "inputs": {"TEXT": {"datatype": "BYTES", "shape": shape, "data": texts}},
            "expected": {
                "INTENT": {"datatype": "BYTES", "shape": shape, "data": intents},
                "CONFIDENCE": {
                    "datatype": "FP32",
                    "shape": shape,
                    # float32 values as their shortest repr, as `mmetools fixtures regen` writes
                    "data": json_values(confidence, "FP32"),
                    **CONFIDENCE_TOLERANCE,
                },
            },
        }
        write_fixture(FIXTURES / f"{name}.json", case)
        print(f"{name}: {intents} {[round(float(c), 4) for c in confidence[:, 0]]}")


if __name__ == "__main__":
    main()
