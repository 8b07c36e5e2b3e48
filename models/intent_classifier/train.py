"""Train the intent classifier on synthetic utterances and export it to TorchScript.

    .venv/bin/python models/intent_classifier/train.py

Writes intent_classifier_inferencer/1/model.pt (then: `dvc add` + `dvc push`, see README.md),
intent_classifier_preprocessing/1/vocab.txt and intent_classifier_postprocessing/1/labels.txt.
Everything is seeded; on the same machine and library versions two runs write identical bytes.

The data is synthetic: template sentences per intent with slot values (cities, artists, times,
dishes) and random politeness fillers. The held-out set uses slot values never seen in training,
so its accuracy says something about unknown words. Sentences are tokenized by the exact code
Triton runs (intent_classifier_preprocessing/1/model.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS_PATH = HERE / "intent_classifier_inferencer" / "1" / "model.pt"
VOCAB_PATH = HERE / "intent_classifier_preprocessing" / "1" / "vocab.txt"
LABELS_PATH = HERE / "intent_classifier_postprocessing" / "1" / "labels.txt"
SEED = 20240611
EMBEDDING_DIM = 32


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
    HERE / "intent_classifier_preprocessing" / "1" / "model.py", "intent_classifier_preprocessing"
)

# --- synthetic utterances ---------------------------------------------------------------------

TEMPLATES: dict[str, list[str]] = {
    "check_weather": [
        "what's the weather in {city}",
        "what is the weather like {day}",
        "will it rain in {city} {day}",
        "is it going to be sunny {day}",
        "how cold is it in {city}",
        "do i need an umbrella {day}",
        "weather forecast for {city}",
        "how hot will it be in {city} {day}",
    ],
    "goodbye": [
        "goodbye",
        "bye for now",
        "see you {day}",
        "talk to you later",
        "that's all for {day} thanks",
        "good night",
        "i have to go now bye",
        "catch you later",
    ],
    "greeting": [
        "hello",
        "hi there",
        "good morning",
        "hey how are you",
        "hello my name is {name}",
        "hi it's {name}",
        "good evening assistant",
        "hey there what's up",
    ],
    "order_food": [
        "order a {food}",
        "i want to order {food} for dinner",
        "get me a {food} delivered",
        "can you order {food} from the nearest restaurant",
        "i'm hungry order some {food}",
        "deliver two {food} to my place",
        "book a table for {food} {day}",
        "find a place that serves {food}",
    ],
    "play_music": [
        "play some {genre}",
        "play {artist}",
        "put on a song by {artist}",
        "i want to listen to {genre} music",
        "play my {genre} playlist",
        "start the music",
        "shuffle songs by {artist}",
        "turn on some {genre} radio",
    ],
    "set_alarm": [
        "set an alarm for {time}",
        "wake me up at {time}",
        "remind me at {time} {day}",
        "alarm at {time} please",
        "set a timer for {minutes} minutes",
        "i need to get up at {time}",
        "create an alarm {day} at {time}",
        "set my alarm to {time}",
    ],
}
INTENTS = tuple(sorted(TEMPLATES))  # index = network output index

# Slot values: training and held-out sets use disjoint values.
SLOTS_TRAIN = {
    "city": ["paris", "london", "berlin", "tokyo", "madrid", "new york", "rome", "oslo"],
    "day": ["today", "tomorrow", "tonight", "on monday", "this weekend", "on friday"],
    "name": ["alice", "bob", "carol", "dave", "erin", "frank"],
    "food": ["pizza", "burger", "sushi", "salad", "pad thai", "burrito"],
    "genre": ["jazz", "rock", "classical", "hip hop", "techno", "blues"],
    "artist": ["the beatles", "adele", "miles davis", "queen", "mozart", "daft punk"],
    "time": ["7 am", "6 30", "noon", "8 pm", "midnight", "5 45 am"],
    "minutes": ["5", "10", "15", "20", "30", "45"],
}
SLOTS_HELDOUT = {
    "city": ["lisbon", "cairo", "lima", "seoul", "dublin"],
    "day": ["on sunday", "next week", "in the morning", "on tuesday"],
    "name": ["grace", "heidi", "ivan", "judy"],
    "food": ["ramen", "tacos", "kebab", "curry"],
    "genre": ["reggae", "metal", "soul", "country"],
    "artist": ["beyonce", "bach", "nirvana", "coldplay"],
    "time": ["9 am", "7 15", "10 pm", "4 am"],
    "minutes": ["3", "25", "40", "90"],
}
PREFIXES = ["", "", "", "please ", "hey ", "can you ", "could you please ", "ok "]
SUFFIXES = ["", "", "", " please", " thanks", " now", " right away", "!", "?"]


def make_sentences(
    count: int, slots: dict[str, list[str]], seed: int
) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    sentences, labels = [], []
    for i in range(count):
        label = i % len(INTENTS)
        templates = TEMPLATES[INTENTS[label]]
        template = templates[int(rng.integers(len(templates)))]
        values = {key: choices[int(rng.integers(len(choices)))] for key, choices in slots.items()}
        prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
        suffix = SUFFIXES[int(rng.integers(len(SUFFIXES)))]
        sentence = prefix + template.format(**values) + suffix
        if rng.random() < 0.3:
            sentence = sentence.capitalize()
        sentences.append(sentence)
        labels.append(label)
    return sentences, labels


def build_vocab(sentences: list[str]) -> list[str]:
    """<pad>, <unk>, then training words by frequency (ties alphabetical): deterministic."""
    counts = Counter(token for s in sentences for token in preprocessing.tokenize(s))
    words = sorted(counts, key=lambda word: (-counts[word], word))
    return [preprocessing.PAD_TOKEN, preprocessing.UNK_TOKEN, *words]


def encode_all(sentences: list[str], vocab: dict[str, int]) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocessing.encode(s, vocab) for s in sentences]))


# --- network ----------------------------------------------------------------------------------


class IntentNet(nn.Module):
    """Mean of word embeddings (padding ignored) -> MLP -> one logit per intent."""

    def __init__(self, vocab_size: int, num_intents: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, EMBEDDING_DIM, padding_idx=0)
        self.hidden = nn.Linear(EMBEDDING_DIM, EMBEDDING_DIM)
        self.output = nn.Linear(EMBEDDING_DIM, num_intents)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        mask = (token_ids != 0).unsqueeze(-1).to(torch.float32)
        # an all-padding row (empty text) averages to zeros instead of dividing by zero
        count = mask.sum(dim=1).clamp(min=1.0)
        pooled = (self.embedding(token_ids) * mask).sum(dim=1) / count
        logits: torch.Tensor = self.output(torch.relu(self.hidden(pooled)))
        return logits


def accuracy(model: nn.Module, token_ids: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(token_ids).argmax(dim=1) == labels).float().mean())


def word_dropout(token_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace 15% of the real words by <unk>, so the network copes with unknown words."""
    drop = (torch.rand(token_ids.shape, generator=generator) < 0.15) & (token_ids != 0)
    return torch.where(drop, torch.full_like(token_ids, preprocessing.UNK_ID), token_ids)


def train(epochs: int) -> tuple[IntentNet, list[str], dict[str, float]]:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    train_text, train_labels = make_sentences(3000, SLOTS_TRAIN, SEED)
    test_text, test_labels = make_sentences(600, SLOTS_HELDOUT, SEED + 1)
    tokens = build_vocab(train_text)
    vocab = {token: index for index, token in enumerate(tokens)}
    train_x, train_y = encode_all(train_text, vocab), torch.tensor(train_labels)
    test_x, test_y = encode_all(test_text, vocab), torch.tensor(test_labels)
    model = IntentNet(len(tokens), len(INTENTS))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(SEED)
    batch_size = 64
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            logits = model(word_dropout(train_x[index], generator))
            # label smoothing keeps confidences informative (not all 1.0) for fixtures and users
            loss = nn.functional.cross_entropy(logits, train_y[index], label_smoothing=0.1)
            loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
            optimizer.step()
            total += float(loss.detach()) * len(index)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}")
    metrics = {
        "train_accuracy": accuracy(model, train_x, train_y),
        "heldout_accuracy": accuracy(model, test_x, test_y),
        "seconds": time.monotonic() - started,
    }
    return model.eval(), tokens, metrics


def export_torchscript(model: nn.Module, path: Path) -> None:
    """torch.jit.script, saved without the debug records (*.debug_pkl).

    The debug records hold the absolute paths of this script and of torch's sources on the
    machine that exported: dropping them keeps the file free of local paths and identical
    across checkouts. torch.jit.load and libtorch (Triton) load archives without them.
    """
    scripted = torch.jit.script(model)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as temp_dir:
        # the archive's top-level folder is named after the file: save under the final name
        full = Path(temp_dir) / "full" / path.name
        full.parent.mkdir()
        torch.jit.save(scripted, str(full))
        stripped = Path(temp_dir) / path.name
        reader = torch._C.PyTorchFileReader(str(full))
        writer = torch._C.PyTorchFileWriter(str(stripped))
        for record in reader.get_all_records():
            # the writer adds its own .data/serialization_id (a hash of the records)
            if record.endswith(".debug_pkl") or record == ".data/serialization_id":
                continue
            data = reader.get_record(record)
            writer.write_record(record, data, len(data))
        writer.write_end_of_file()
        del writer
        os.chmod(stripped, 0o644)
        os.replace(stripped, path)


def write_lines(path: Path, lines: list[str] | tuple[str, ...]) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(temp, path)


def check_export(model: nn.Module, path: Path, vocab: dict[str, int]) -> float:
    """Max |model - reloaded file| on held-out sentences; raises when the export is off."""
    text, _ = make_sentences(32, SLOTS_HELDOUT, SEED + 2)
    token_ids = encode_all(text + ["", "zzz qqq"], vocab)
    reloaded = torch.jit.load(str(path))  # type: ignore[no-untyped-call, unused-ignore]
    with torch.no_grad():
        error = float((reloaded(token_ids) - model(token_ids)).abs().max())
    if error > 1e-5:
        raise SystemExit(f"{path}: the exported model differs from the trained one by {error}")
    return error


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript writes a module's constants in set order, which follows str hashing:
        # rerun with fixed hashing so the exported bytes do not change from run to run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    # One thread: CPU kernels reduce in a fixed order, so reruns give the same weights.
    torch.set_num_threads(1)
    model, tokens, metrics = train(args.epochs)
    print(
        f"accuracy: train {metrics['train_accuracy']:.4f}, "
        f"held-out (unseen slot values) {metrics['heldout_accuracy']:.4f} "
        f"({metrics['seconds']:.1f}s, vocabulary {len(tokens)} tokens)"
    )
    export_torchscript(model, WEIGHTS_PATH)
    write_lines(VOCAB_PATH, tokens)
    write_lines(LABELS_PATH, INTENTS)
    error = check_export(model, WEIGHTS_PATH, {token: i for i, token in enumerate(tokens)})
    size = WEIGHTS_PATH.stat().st_size
    print(f"wrote {WEIGHTS_PATH.relative_to(HERE)} ({size} bytes, reload error {error:.2e})")


if __name__ == "__main__":
    main()
