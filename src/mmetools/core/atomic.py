"""The one way mmetools replaces a file: write a temp file beside it, fsync, rename over it.

A reader sees the old file or the new one, never half of either; a failed write leaves no temp.
Also here: a set of files moved into place together (``move_set_into_place``), a create-only
rename that never overwrites (``link_create_only``), temp names that record their writer's pid so
a later run can remove what a killed writer left (``owned_temp_path``, ``owned_temp_folder``,
``remove_orphaned_temps``)
and the folder fsync that makes renames durable (``fsync_folder``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from pathlib import Path

from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

KEEP_MODE = -1  # ``mode=KEEP_MODE``: an existing file keeps its permissions (new ones get 0644)


def write_bytes_atomically(
    path: Path, data: bytes, mode: int = 0o644, *, parents: bool = False
) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``
    (``parents``: create the folder first)."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def write_text_atomically(
    path: Path, text: str, mode: int = 0o644, *, parents: bool = False
) -> None:
    write_bytes_atomically(path, text.encode("utf-8"), mode, parents=parents)


def temporary_path_beside(path: Path) -> Path:
    """A fresh, empty temp file beside ``path`` (same folder, so a rename is atomic), named by
    ``owned_temp_path``: what a killed writer leaves, ``remove_orphaned_temps(path)`` removes."""
    temporary = owned_temp_path(path)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    return temporary


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


def link_create_only(temporary: Path, final: Path) -> None:
    """Give ``temporary`` the name ``final`` unless ``final`` exists (FileExistsError): a hard
    link never overwrites. On a file system without hard links: check, then rename (a small race
    window remains)."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if final.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from e
        os.replace(temporary, final)


def owned_temp_path(final: Path) -> Path:
    """``.<name>.tmp-<pid>-<random>`` beside ``final``: the pid lets a later run recognise the
    temps of writers that died (``remove_orphaned_temps``). Not created: open it with "xb"."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"


def owned_temp_folder(final: Path) -> Path:
    """An ``owned_temp_path`` folder, created empty and private (0700, as ``mkdtemp``): a build or
    a server's work folder that a later run removes if this process dies before it does."""
    folder = owned_temp_path(final)
    folder.mkdir(mode=0o700)
    return folder


def orphaned_temps(final: Path) -> list[Path]:
    """The ``owned_temp_path`` temps (files or folders) of ``final`` whose writer is gone (its
    pid is no live process; another user's live process counts as alive)."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.tmp-(\d+)-[0-9a-f]+$")
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return []
    orphans = []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not pid_alive(pid):
            orphans.append(entry)
    return orphans


def remove_orphaned_temps(final: Path) -> None:
    """Delete the ``owned_temp_path`` temps of ``final`` (files or folders) whose writer is gone."""
    for entry in orphaned_temps(final):
        remove_temp(entry)


def remove_temp(entry: Path) -> None:
    """Delete a temp file or folder (best effort: what cannot be removed stays, logged)."""
    logger.info("removing %s, left by an interrupted run", entry)
    if entry.is_dir() and not entry.is_symlink():
        remove_tree(entry, ignore_errors=True)
    else:
        try:
            entry.unlink(missing_ok=True)
        except OSError as e:
            logger.warning("cannot remove %s: %s", entry, e.strerror or e)


def pid_alive(pid: int) -> bool:
    """Is ``pid`` a live process (another user's counts as alive)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_folder(folder: Path, *, best_effort: bool = True) -> None:
    """Make renames in ``folder`` durable; ``best_effort=False`` raises when the file system
    refuses (a store must know its write is durable)."""
    if best_effort:
        _fsync_folder(folder)
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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


__all__ = [
    "KEEP_MODE",
    "fsync_folder",
    "link_create_only",
    "move_set_into_place",
    "orphaned_temps",
    "owned_temp_folder",
    "owned_temp_path",
    "pid_alive",
    "remove_orphaned_temps",
    "remove_temp",
    "temporary_path_beside",
    "write_bytes_atomically",
    "write_text_atomically",
]
