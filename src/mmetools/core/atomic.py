"""The one way mmetools replaces a file: write a temp file beside it, fsync, rename over it.

A reader sees the old file or the new one, never half of either; a failed write leaves no temp.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

KEEP_MODE = -1  # ``mode=KEEP_MODE``: an existing file keeps its permissions (new ones get 0644)


def write_bytes_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    if mode == KEEP_MODE:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    write_bytes_atomically(path, text.encode("utf-8"), mode)


def temporary_path_beside(path: Path) -> Path:
    """A fresh, empty temp file beside ``path`` (same folder, so a rename is atomic)."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(descriptor)
    return Path(temporary)


def move_set_into_place(sidecars: dict[Path, Path], primary: tuple[Path, Path]) -> None:
    """Rename a file and its sidecars (``{temp: final}``) into place, ``primary`` last.

    Several renames cannot be one atomic step, so the old primary (the tarball) goes first: an
    interruption at any point leaves the old consistent set, no primary at all (its sidecars are
    orphans a rerun replaces), or the new consistent set; never new sidecars beside an old primary.
    """
    source, target = primary
    target.unlink(missing_ok=True)
    _fsync_folder(target.parent)
    for temporary, final in sidecars.items():
        os.replace(temporary, final)
    os.replace(source, target)
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable (best effort: some file systems refuse a folder fsync)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
