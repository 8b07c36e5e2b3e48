"""Excerpts of Triton's log that explain a failure: error lines, lines naming the model, Python
tracebacks (Triton quotes them with escaped newlines), never the banner."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Log lines the CPU-only bundled server always prints: they explain nothing.
_HARMLESS_LOG = re.compile(
    r"CUDA driver|CudaDriverHelper|NVML|DCGM|pinned memory|cuda_memory_manager|"
    r"unable to create stream|GPU metrics",
    re.IGNORECASE,
)
_ERROR_LOG = re.compile(r"^E\d{4} ")
_TROUBLE = re.compile(r"^W\d{4} |fail|error|exception|unavailable|unhealthy", re.IGNORECASE)
_TRAILING_QUOTE = re.compile(r'(\\n|[";\s])+$')
_PORT_IN_USE = re.compile(r"already in use|address in use|failed to start .*service", re.I)


def _expand_tracebacks(lines: Iterable[str]) -> list[str]:
    """Triton quotes multi-line messages (Python tracebacks) with escaped newlines: show them as
    lines, each traceback once (the ensemble's error repeats its step's)."""
    result: list[str] = []
    seen: set[str] = set()
    for line in lines:
        head, _, tail = line.partition("\\n")
        result.append(head if tail else line)
        key = _TRAILING_QUOTE.sub("", tail)
        if tail and key not in seen:
            seen.add(key)
            result.extend(f"    {part}" for part in tail.split("\\n") if part.strip(' ";'))
    return result


def _first_paragraph(text: str) -> str:
    """Triton appends the Python traceback after a blank line; the log excerpt shows it."""
    return text.split("\n\n", 1)[0].strip()


def log_excerpt(text: str, names: Iterable[str] = (), limit: int = 40) -> list[str]:
    """The log lines that explain a problem: error lines and lines naming one of ``names``
    (models, steps), plus Python tracebacks printed by stub processes; never the banner."""
    wanted = [n for n in names if n]
    picked: list[str] = []
    in_traceback = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        if in_traceback:
            picked.append(line)
            if line and not line.startswith((" ", "Traceback")):
                in_traceback = False  # the exception line ends the traceback
            continue
        if _HARMLESS_LOG.search(line) or line.startswith(("+", "|")):
            continue
        if _ERROR_LOG.match(line) or (
            _TROUBLE.search(line) and any(name in line for name in wanted)
        ):
            picked.append(line)
    unique = _expand_tracebacks(dict.fromkeys(picked))
    if len(unique) > limit:
        unique = [f"... {len(unique) - limit} earlier lines omitted", *unique[-limit:]]
    return unique
