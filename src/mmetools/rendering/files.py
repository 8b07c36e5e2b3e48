"""Writing rendered reports to files: every report file (JUnit XML, Markdown, JSON) goes through
:func:`write_report`, atomically, its folders created, a failure an MmetoolsError naming the file.

:func:`check_report_path` is for commands that run for a while: the path is checked before any
work starts, so a typo costs neither the run nor its summary.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mmetools.core.atomic import write_bytes_atomically
from mmetools.core.errors import MmetoolsError, UsageError

logger = logging.getLogger(__name__)


def check_report_path(path: Path, option: str = "--junit-xml") -> None:
    """UsageError unless a report can be written at ``path`` (missing folders are created):
    checked before any test runs, so a typo costs neither the run nor its summary."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name such as report.xml")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise UsageError(f"{option} {path}: not writable")


def check_output_folder(path: Path, option: str = "--out") -> None:
    """UsageError unless ``path`` is, or can be made, a writable folder for reports: checked
    before any work starts (a file there used to fail only when the reports were written)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    folder = path if path.exists() else existing
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {folder} is not writable")


def write_report(path: Path, data: bytes, what: str) -> None:
    """Write the report ``what`` (e.g. "JUnit XML report") to ``path`` atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, data)
    except OSError as e:
        raise MmetoolsError(f"{path}: cannot write the {what}: {e.strerror or e}") from e
    logger.debug("wrote %s", path)
