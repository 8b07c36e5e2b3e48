"""The load test's options, parsed and checked before any work starts.

A load test runs for minutes (an env, a Triton, a closed-loop run per concurrency level), so
every option is checked first: ``--rates nan`` used to fail after the whole closed-loop run,
``--instance-memory -1`` was accepted. Each problem is a UsageError naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mmetools.core.errors import UsageError
from mmetools.testing.memory import check_instance_memory

DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16)
DEFAULT_SAFETY_FACTOR = 0.5
MAX_USERS = 10_000  # locust users of one step
MAX_RATE = 100_000.0  # requests/s of one paced step
MAX_SECONDS = 86_400.0  # one step: a day (a larger timeout overflows the subprocess wait)


def _values(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_concurrency(text: str, option: str = "--concurrency") -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4): whole numbers of users, 1 to 10000."""
    levels = []
    for part in _values(text):
        try:
            level = int(part)
        except ValueError as e:
            raise UsageError(
                f"{option} {text!r}: {part!r} is not a whole number of users; give "
                "comma-separated whole numbers, e.g. 1,2,4"
            ) from e
        levels.append(level)
    check_concurrency(levels, option)
    return tuple(levels)


def parse_rates(text: str, option: str = "--rates") -> tuple[float, ...]:
    """``"5,10.5"`` -> (5.0, 10.5): finite request rates above 0; ``""`` for none."""
    rates = []
    for part in _values(text):
        try:
            rates.append(float(part))
        except ValueError as e:
            raise UsageError(
                f"{option} {text!r}: {part!r} is not a number; give comma-separated requests/s, "
                "e.g. 5,10"
            ) from e
    check_rates(rates, option)
    return tuple(rates)


def check_concurrency(levels: Sequence[int], option: str = "--concurrency") -> None:
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int):
            raise UsageError(f"{option}: {level!r} is not a whole number of users")
        if not 1 <= level <= MAX_USERS:
            raise UsageError(f"{option}: {level} users; give 1 to {MAX_USERS}")


def check_rates(rates: Sequence[float], option: str = "--rates") -> None:
    for rate in rates:
        if not math.isfinite(rate) or not 0 < rate <= MAX_RATE:
            raise UsageError(f"{option}: {rate:g} requests/s; give a number above 0, at most "
                             f"{MAX_RATE:g}")  # fmt: skip


def _check_range(value: float, option: str, low: float, high: float, what: str) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{option} {value:g}: give {what} from {low:g} to {high:g}")


def check_loadtest_options(
    *,
    concurrency: Sequence[int],
    rates: Sequence[float],
    seconds: float,
    p99_budget_ms: float,
    safety_factor: float,
    instance_memory_gib: float | None = None,
) -> None:
    """UsageError naming the first option that cannot work (nan and inf included)."""
    check_concurrency(concurrency)
    check_rates(rates)
    if not concurrency and not rates:
        raise UsageError("--concurrency and --rates are both empty: nothing to measure")
    _check_range(seconds, "--seconds", 1.0, MAX_SECONDS, "a duration in seconds")
    _check_range(p99_budget_ms, "--p99-budget-ms", 1.0, 3_600_000.0, "a latency in ms")
    _check_range(safety_factor, "--safety-factor", 0.01, 1.0, "a factor")
    check_instance_memory(instance_memory_gib)


__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_SAFETY_FACTOR",
    "check_concurrency",
    "check_loadtest_options",
    "check_rates",
    "parse_concurrency",
    "parse_rates",
]
