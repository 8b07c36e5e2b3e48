"""What validation reports: a Problem per finding, how it shows its path, and the summary line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmetools.model.config import clipped

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class Problem:
    """One finding: the file (or folder) it is about, what is wrong, and how bad it is."""

    path: Path
    message: str
    severity: Severity = ERROR
    line: int | None = None
    column: int | None = None

    def __post_init__(self) -> None:
        # Messages quote names and values from the input; a 1 MB name must not make a 1 MB line.
        object.__setattr__(self, "message", clipped(self.message, MAX_MESSAGE_CHARS))

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def location(self) -> str:
        where = display_path(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.location}: {prefix}{self.message}"


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it, else as given."""
    if path.is_absolute():
        cwd = Path.cwd()
        for base in (cwd, cwd.resolve()):
            try:
                return str(path.relative_to(base))
            except ValueError:
                continue
    return str(path)


def count(problems: Iterable[Problem]) -> tuple[int, int]:
    """(errors, warnings) among ``problems``."""
    listed = list(problems)
    errors = sum(1 for p in listed if p.is_error)
    return errors, len(listed) - errors


def summary_line(problems: Sequence[Problem], paths: Sequence[Path]) -> str:
    """One line for the end of a report, e.g. ``invalid: 2 errors, 1 warning in 3 paths``."""
    errors, warnings = count(problems)
    verdict = "invalid" if errors else "valid"
    skipped = [display_path(p) for p in paths if p.is_file()]
    checked = len(paths) - len(skipped)
    line = (
        f"{verdict}: {plural(errors, 'error')}, {plural(warnings, 'warning')} "
        f"in {plural(checked, 'path')}"
    )
    if skipped:
        line += f" (skipped {plural(len(skipped), 'file')}: {join(skipped)})"
    return line


def by_file(problems: Iterable[Problem]) -> list[Problem]:
    """Problems grouped by file, keeping the order checks found them in within one file."""
    return sorted(problems, key=lambda p: str(p.path))


def join(items: Iterable[str]) -> str:
    return ", ".join(items)


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
