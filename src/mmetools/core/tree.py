"""The one way mmetools walks and removes a folder tree: iteratively, so depth is limited by the file
system and never by Python's recursion limit.

``walk`` yields every entry below a folder (each folder's entries sorted by name, then its
subfolders' in turn, depth first), without following
symlinks (a symlink is yielded, not entered); the caller says which folders not to enter.
``remove_tree`` removes a tree bottom-up the same way (``shutil.rmtree`` recurses once per level
before Python 3.12 and raised RecursionError on 1100 nested folders). ``files_named`` finds files
by suffix, for the callers that used ``Path.rglob``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeEntry:
    """One entry below the walked folder."""

    path: Path
    relative: str  # posix path below the walked folder
    name: str
    info: os.stat_result  # lstat: a symlink is described, not followed

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.info.st_mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.info.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.info.st_mode)


def _enter_all(entry: TreeEntry) -> bool:
    return True


def walk(root: Path, *, enter: Callable[[TreeEntry], bool] = _enter_all) -> Iterator[TreeEntry]:
    """Every entry below ``root`` (not ``root`` itself): a folder's entries sorted by name, then
    those of its subfolders in that order, depth first.

    A folder is entered after its folder's entries were yielded and only when ``enter(entry)`` is true; symlinks to
    folders are never entered. An explicit stack: no recursion, whatever the depth."""
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        here, prefix = stack.pop()
        with os.scandir(here) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        below: list[tuple[Path, str]] = []
        for found in entries:
            entry = TreeEntry(
                Path(found.path),
                f"{prefix}{found.name}",
                found.name,
                found.stat(follow_symlinks=False),
            )
            yield entry
            if entry.is_dir and enter(entry):
                below.append((entry.path, f"{entry.relative}/"))
        stack.extend(reversed(below))


def files_named(root: Path, suffix: str) -> list[Path]:
    """The regular files below ``root`` whose name ends with ``suffix``, sorted by path."""
    return sorted(
        entry.path for entry in walk(root) if entry.is_file and entry.name.endswith(suffix)
    )


def remove_tree(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove ``path`` and everything below it (a file or symlink is just unlinked).

    Iterative, holding one folder descriptor at a time (``dir_fd``, then ``..``), so neither the
    recursion limit, nor the open-file limit, nor PATH_MAX bounds the depth. With
    ``ignore_errors`` nothing is raised (a clean-up)."""
    try:
        _remove_tree(path)
    except OSError as e:
        if not ignore_errors:
            raise
        logger.debug("could not remove %s: %s", path, e)


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-folder in the folder ``fd``; the names of its subfolders."""
    folders = []
    with os.scandir(fd) as scan:
        for entry in scan:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return folders


def _remove_tree(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        path.unlink()
        return
    fd = os.open(path, _FOLDER_FLAGS)
    try:
        # One level per item: the folder's name in its parent, and its subfolders still to remove.
        levels: list[tuple[str, list[str]]] = [(str(path), _clear_files(fd))]
        while levels:
            name, pending = levels[-1]
            if pending:
                below = pending.pop()
                try:
                    child = os.open(below, _FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    os.unlink(below, dir_fd=fd)  # replaced by a file or symlink meanwhile
                    continue
                os.close(fd)
                fd = child
                levels.append((below, _clear_files(fd)))
                continue
            levels.pop()
            if not levels:
                break
            parent = os.open("..", _FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)
