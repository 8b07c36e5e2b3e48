"""What the fuzz tier's properties share: bounded hypothesis settings, the in-process CLI run
and its clean-exit check, and the mutation strategies (bytes of an example file, JSON values)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mmetools.cli import main

FEW, MANY = 10, 1000


def bounded(
    examples: int, deadline: float | None = 10.0
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``examples`` per run, ``deadline`` seconds per example (None: a tool such as uv runs in
    each example, and a shared machine makes its time vary)."""
    return settings(
        max_examples=examples,
        deadline=None if deadline is None else timedelta(seconds=deadline),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,  # no .hypothesis folder in the repository
    )


def marked(
    tests: dict[str, Callable[..., None]], marks: list[Any]
) -> dict[str, Callable[..., None]]:
    """``tests`` with each of ``marks`` applied (the long tier's copies carry ``fuzz``)."""
    for mark in marks:
        tests = {name: mark(test) for name, test in tests.items()}
    return tests


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)  # an exception escaping here is a failure of the property
    text = out.getvalue() + err.getvalue()
    return code, text


def assert_clean_exit(code: int, text: str, allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    assert code in allowed, text
    assert "Traceback" not in text, text
    if code != 0:
        assert text.strip(), "a failure must say why"


# -------------------------------------------------------------------------------------------------
# Strategies


def mutated(text: str) -> st.SearchStrategy[bytes]:
    """``text`` with a few slices deleted, duplicated or replaced by random bytes."""
    data = text.encode()

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        result = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            start = draw(st.integers(0, len(result)))
            end = draw(st.integers(start, min(len(result), start + 40)))
            kind = draw(st.sampled_from(["delete", "duplicate", "replace"]))
            if kind == "delete":
                del result[start:end]
            elif kind == "duplicate":
                result[start:start] = result[start:end]
            else:
                result[start:end] = draw(st.binary(max_size=20))
        return bytes(result)

    return build()


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def replace_somewhere(document: Any, path: list[int], value: Any) -> Any:
    """``document`` with the node reached by following ``path`` (indexes mod size) replaced."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return value
    keys = list(document) if isinstance(document, dict) else list(range(len(document)))
    key = keys[path[0] % len(keys)]
    document[key] = replace_somewhere(document[key], path[1:], value)
    return document
