"""JSON parsing that fails with a short ValueError, never a RecursionError or a huge int.

``json.loads`` raises RecursionError for deeply nested input and a ValueError naming
``sys.set_int_max_str_digits`` for an integer of more than 4300 digits; every JSON file mmetools
reads (fixtures, manifests, evidence, sidecars) goes through :func:`parse_json` instead.
"""

from __future__ import annotations

import json
from typing import Any

MAX_INT_DIGITS = 100  # far above any count, size or value a fixture or manifest holds


class JsonTooComplex(ValueError):
    """Valid JSON that mmetools refuses to hold: nesting too deep or an integer too long."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonTooComplex(
            f"an integer with {len(text.lstrip('-'))} digits (max {MAX_INT_DIGITS})"
        )
    return int(text)


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``; json.JSONDecodeError for bad syntax, JsonTooComplex (both are
    ValueErrors) for nesting Python cannot parse or integers longer than MAX_INT_DIGITS."""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except RecursionError as e:
        raise JsonTooComplex("nested too deeply to parse") from e
