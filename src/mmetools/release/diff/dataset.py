"""Extra inputs for ``mmetools diff`` (``--dataset``), beside the fixtures' inputs:

- a folder of input-only case files ``*.json``: ``{"description": "...", "inputs": {...}}`` in the
  fixture format (BYTES from ``files`` relative to the case file);
- or a ``.jsonl`` file, one ``{"name": "...", "inputs": {...}}`` per line (``files`` relative to
  the ``.jsonl``'s folder).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mmetools.core.errors import FixtureError, UsageError
from mmetools.model.cases import (
    EnsembleSignature,
    FixtureCase,
    parse_input_case,
    read_fixture_document,
)

logger = logging.getLogger(__name__)


def load_dataset(path: Path, signature: EnsembleSignature, model_name: str) -> list[FixtureCase]:
    """Input-only cases from a folder of ``*.json`` case files or a ``.jsonl`` file."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise FixtureError(f"{path}: the dataset folder holds no *.json case files")
        return [
            parse_input_case(read_fixture_document(f), f, f.stem, signature, model_name)
            for f in files
        ]
    if path.suffix == ".jsonl" and path.is_file():
        cases: list[FixtureCase] = []
        seen: set[str] = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                document = json.loads(line)
            except json.JSONDecodeError as e:
                raise FixtureError(f"{where}: invalid JSON: {e.msg}") from e
            if not isinstance(document, dict) or not isinstance(document.get("name"), str):
                raise FixtureError(f"{where}: each line must be an object with a 'name' string")
            name = document.pop("name")
            if name in seen:
                raise FixtureError(f"{where}: the name {name!r} is used twice")
            seen.add(name)
            cases.append(parse_input_case(document, path, name, signature, model_name))
        if not cases:
            raise FixtureError(f"{path}: the dataset holds no cases")
        return cases
    raise UsageError(f"--dataset {path}: give a folder of *.json case files or a .jsonl file")
