"""Model weights through DVC: check them against their ``.dvc`` pointers, pull only what is needed.

A model folder's weight files are tracked by DVC: a small ``<file>.dvc`` pointer (YAML, holding
the file's md5 and size) lives in git, the file itself is git-ignored and stored in a DVC remote.
``weight_status`` compares each file with its pointer in-process (DVC's own md5 semantics), and
``fetch_weights`` runs ``dvc pull`` for a model's pointers only when something is missing, so a
model whose weights are in place costs a few stat/md5 calls and no dvc process. ``ensure_weights``
is the pipeline's fetch step: ``fetch_weights``, then every inferencer's weight file present.
"""

from __future__ import annotations

import configparser
import enum
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import ArtifactError, DvcError, ProcessError
from mmetools.model.folder import ModelFolder, weight_paths
from mmetools.core import process
from mmetools.core.process import run
from mmetools.core.settings import Settings
from mmetools.core.tree import files_named

logger = logging.getLogger(__name__)

POINTER_SUFFIX = ".dvc"
DVC_DIR = ".dvc"
# DVC 3 writes `hash: md5` (plain md5 of the bytes); pointers without it come from DVC 2, whose
# md5 turned CRLF into LF in files that look like text ("md5-dos2unix", see dvc_data.hashfile).
MD5 = "md5"
LEGACY_MD5 = "md5-dos2unix"
_CHUNK_SIZE = 2**20  # dvc_data hashes in chunks of 1 MiB; the legacy text test is per chunk
_TEXT_BLOCK_SIZE = 512
_TEXT_CHARS = bytes(range(32, 127)) + b"\n\r\t\f\b"
MEMO_FILE = "dvc-md5-memo.json"  # in the mmetools cache folder
_MD5_PATTERN = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class WeightState(enum.Enum):
    PRESENT = "present"  # the file exists and matches its pointer
    MISSING = "missing"
    MODIFIED = "modified"  # the file exists but differs from its pointer
    UNCHECKED = "unchecked"  # a tracked directory: only dvc can compare it, so always pull


@dataclass(frozen=True)
class TrackedFile:
    """One output of a .dvc pointer file."""

    pointer: Path  # the .dvc file
    path: Path  # the tracked file or directory
    md5: str
    hash_name: str  # MD5 or LEGACY_MD5
    size: int | None
    remote: str | None  # an output may name its own remote

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


@dataclass(frozen=True)
class WeightStatus:
    file: TrackedFile
    state: WeightState
    actual_md5: str | None = None  # set for MODIFIED files whose size matched


# --- reading pointers ----------------------------------------------------------------------------


def find_dvc_root(start: Path) -> Path:
    """The DVC repository holding ``start``: the nearest folder upwards with a .dvc/ folder."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / DVC_DIR).is_dir():
            return folder
    raise DvcError(f"{start}: not inside a DVC repository (no {DVC_DIR}/ folder above it)")


def read_pointer(pointer: Path) -> list[TrackedFile]:
    """Parse a .dvc pointer file into its outputs; DvcError names the file and field."""
    try:
        # ruamel.yaml: the parser DVC itself reads .dvc files with
        document = YAML(typ="safe", pure=True).load(pointer.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as e:
        raise DvcError(f"{pointer}: cannot read DVC pointer: {e}") from e
    outs = document.get("outs") if isinstance(document, dict) else None
    if not isinstance(outs, list) or not outs:
        raise DvcError(f"{pointer}: not a DVC pointer: expected a non-empty 'outs' list")
    return [_tracked_file(pointer, index, out) for index, out in enumerate(outs)]


def _tracked_file(pointer: Path, index: int, out: Any) -> TrackedFile:
    where = f"{pointer}: outs[{index}]"
    if not isinstance(out, dict):
        raise DvcError(f"{where}: expected a mapping with 'path' and 'md5'")
    path, md5 = out.get("path"), out.get("md5")
    if not isinstance(path, str) or not path:
        raise DvcError(f"{where}: missing 'path'")
    if not isinstance(md5, str) or not _MD5_PATTERN.match(md5):
        raise DvcError(f"{where}: 'md5' must be 32 hex digits (got {md5!r}); run `dvc add` again")
    if "://" in path or Path(path).is_absolute():
        raise DvcError(
            f"{where}: path {path!r} is outside the repository; mmetools only fetches "
            "files tracked inside the model folder"
        )
    hash_name = out.get("hash", LEGACY_MD5)
    if hash_name not in (MD5, LEGACY_MD5):
        raise DvcError(f"{where}: unsupported hash {hash_name!r} (expected {MD5!r})")
    size = out.get("size")
    remote = out.get("remote")
    return TrackedFile(
        pointer=pointer,
        path=pointer.parent / path,
        md5=md5,
        hash_name=hash_name,
        size=size if isinstance(size, int) else None,
        remote=remote if isinstance(remote, str) else None,
    )


def tracked_files(model: ModelFolder) -> list[TrackedFile]:
    """Every output of every .dvc pointer inside the model folder (a tenant's: inside its own
    folder, where its weights are pulled), sorted by path."""
    pointers = files_named(model.own_dir, POINTER_SUFFIX)  # the one walker: no recursion
    return sorted((f for p in pointers for f in read_pointer(p)), key=lambda f: f.path)


# --- comparing files with pointers ---------------------------------------------------------------


def _is_text_block(block: bytes) -> bool:
    """DVC 2's text heuristic (dvc_data.hashfile.istextfile.istextblock)."""
    if not block:
        return True
    if b"\x00" in block:
        return False
    return len(block.translate(None, _TEXT_CHARS)) / len(block) <= 0.30


def file_md5(path: Path, hash_name: str = MD5) -> str:
    """The md5 DVC records for ``path``: plain md5, or DVC 2's CRLF-normalizing md5 for text."""
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_SIZE):
            if hash_name == LEGACY_MD5 and _is_text_block(chunk[:_TEXT_BLOCK_SIZE]):
                chunk = chunk.replace(b"\r\n", b"\n")
            digest.update(chunk)
    return digest.hexdigest()


class Md5Memo:
    """md5s of files keyed by (size, mtime, inode), kept in the mmetools cache folder.

    DVC keeps the same kind of state database: a large weight file that has not changed since it
    was last checked is not read again, so checking weights stays fast for any size.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = loaded
            except (OSError, ValueError):
                pass  # no memo yet, or a damaged one: start afresh

    @staticmethod
    def _key(file: Path, hash_name: str) -> tuple[str, list[Any]]:
        info = file.stat()
        return f"{hash_name}:{file.resolve()}", [info.st_size, info.st_mtime_ns, info.st_ino]

    def md5(self, file: Path, hash_name: str) -> str:
        key, stamp = self._key(file, hash_name)
        entry = self.entries.get(key)
        if isinstance(entry, list) and entry[:3] == stamp and len(entry) == 4:
            return str(entry[3])
        value = file_md5(file, hash_name)
        self.entries[key] = [*stamp, value]
        self.changed = True
        return value

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.path, json.dumps(self.entries, sort_keys=True))
        except OSError as e:  # a read-only cache only costs speed
            logger.debug("cannot write %s: %s", self.path, e)
        self.changed = False


def file_status(tracked: TrackedFile, memo: Md5Memo | None = None) -> WeightStatus:
    if tracked.is_dir:
        state = WeightState.UNCHECKED if tracked.path.exists() else WeightState.MISSING
        return WeightStatus(tracked, state)
    if not tracked.path.is_file():
        return WeightStatus(tracked, WeightState.MISSING)
    # Size first: a different size settles it without reading the file.
    if tracked.size is not None and tracked.path.stat().st_size != tracked.size:
        return WeightStatus(tracked, WeightState.MODIFIED)
    memo = memo or Md5Memo(None)
    actual = memo.md5(tracked.path, tracked.hash_name)
    if actual != tracked.md5:
        return WeightStatus(tracked, WeightState.MODIFIED, actual)
    return WeightStatus(tracked, WeightState.PRESENT)


def _memo(settings: Settings | None) -> Md5Memo:
    return Md5Memo(settings.cache_dir / MEMO_FILE if settings is not None else None)


def weight_status(model: ModelFolder, settings: Settings | None = None) -> list[WeightStatus]:
    """The state of each DVC-tracked file of the model, without running dvc.

    With ``settings``, md5s are remembered in its cache folder (see Md5Memo).
    """
    memo = _memo(settings)
    statuses = [file_status(tracked, memo) for tracked in tracked_files(model)]
    memo.save()
    return statuses


# --- fetching ------------------------------------------------------------------------------------


def dvc_executable() -> str:
    """The dvc installed next to this Python (the project's venv), else the one on PATH."""
    found = process.find_tool("dvc")
    if found is None:
        raise DvcError("dvc is not installed beside mmetools nor on PATH (`pip install 'dvc[s3]'`)")
    return found


def fetch_weights(
    model: ModelFolder,
    settings: Settings | None = None,
    *,
    remote: str | None = None,
    force: bool = False,
    jobs: int | None = None,
) -> list[Path]:
    """Make the model's DVC-tracked files match their pointers; returns the files pulled.

    Nothing runs when every file is present and matches (an empty list comes back). Otherwise
    ``dvc pull`` runs for the pointers of the missing files only, from ``remote`` or the
    repository's default remote. A file that exists but differs from its pointer is local work
    that pulling would destroy: DvcError, unless ``force`` is set.
    """
    statuses = weight_status(model, settings)
    if not statuses:
        logger.info("%s: no DVC-tracked files", model.name)
        return []
    root = find_dvc_root(model.path)
    _check_committed_pointers_reach_the_remote(model, statuses, root, remote)
    modified = [s for s in statuses if s.state is WeightState.MODIFIED]
    if modified and not force:
        raise DvcError("\n".join(_modified_message(model, s, root) for s in modified))
    needed = [s.file for s in statuses if s.state is not WeightState.PRESENT]
    if not needed:
        logger.debug("%s: all %d DVC-tracked files match their pointers", model.name, len(statuses))
        return []
    pointers = sorted({_relative(f.pointer, root) for f in needed})
    argv = [dvc_executable(), "--wait-for-lock", "pull"]
    if remote:
        argv += ["--remote", remote]
    if force:
        argv.append("--force")
    if jobs:
        argv += ["--jobs", str(jobs)]
    logger.debug("%s: dvc pull %s", model.name, " ".join(pointers))
    failed: ProcessError | None = None
    try:
        output = run(
            [*argv, *pointers],
            cwd=root,
            extra_env={"DVC_NO_ANALYTICS": "1"},
            context=f"{model.name}: dvc pull",
        ).output
    except ProcessError as e:
        # Judge by the files, not the exit code alone: say which file is still wrong and why.
        failed, output = e, e.output
    memo = _memo(settings)
    still_wrong = [
        s
        for s in (file_status(f, memo) for f in needed)
        if s.state is not WeightState.PRESENT and s.state is not WeightState.UNCHECKED
    ]
    memo.save()
    if failed is None and not still_wrong:
        return [f.path for f in needed]
    problems = [_pull_problem(model, s, root, output, remote) for s in still_wrong]
    if failed is not None and not problems:
        problems = [str(failed)]
    raise DvcError("\n".join(problems)) from failed


def ensure_weights(model: ModelFolder) -> list[Path]:
    """Make DVC-tracked files match their pointers (pulling what is absent), then check that
    every inferencer's weight file is there; returns the files pulled. Weights that differ from
    their pointer are refused by :func:`fetch_weights`: an artifact ships the bytes git and DVC
    record, not local edits."""
    pulled = fetch_weights(model)
    if pulled:
        logger.info("%s: fetched %d file(s) through DVC", model.name, len(pulled))
    missing = [
        str(path) for step in model.repository().values() for path in weight_paths(step)
        if not path.is_file()
    ]  # fmt: skip
    if missing:
        raise ArtifactError(
            f"model '{model.name}': weight files missing and not tracked by DVC: "
            + ", ".join(missing)
        )
    return pulled


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _modified_message(model: ModelFolder, status: WeightStatus, root: Path) -> str:
    path = _relative(status.file.path, root)
    pointer = _relative(status.file.pointer, root)
    return (
        f"{path}: differs from its DVC pointer {pointer} (model {model.name}): "
        f"keep it with `dvc add {path}` and `dvc push`, or replace it with the tracked version "
        "with `mmetools fetch --force`"
    )


def _pull_problem(
    model: ModelFolder, status: WeightStatus, root: Path, output: str, remote: str | None
) -> str:
    tracked = status.file
    path = _relative(tracked.path, root)
    remote_name = remote or tracked.remote or _default_remote(root)
    if _reported_missing(output, tracked.md5):
        pointer = _relative(tracked.pointer, root)
        folder = local_remote_folder(root, remote or tracked.remote)
        if folder is not None and _inside(folder, root):
            # This checkout cannot tell "never pushed" from "pushed but not committed": say both,
            # in the order they happen. (Where the push ran, _check_committed_... tells them apart.)
            obj = _relative(remote_object_path(folder, tracked), root)
            return (
                f"{path}: not in DVC remote '{remote_name}' (md5 {tracked.md5}, model "
                f"{model.name}): that remote is the folder {_relative(folder, root)}/ of this "
                "git repository, so its objects reach other checkouts only through git. Where the "
                f"weights were made, run `dvc push {pointer}` if it did not run, then commit what "
                f"it wrote: `git add {obj}` and commit"
            )
        return (
            f"{path}: not in DVC remote '{remote_name}' (md5 {tracked.md5}, model {model.name}): "
            f"push it with `dvc push {pointer}` from a checkout that "
            "has the file, or point the remote at the storage that holds it (.dvc/config)"
        )
    tail = "\n".join(output.strip().splitlines()[-10:])
    return (
        f"{path}: {status.state.value} after `dvc pull` from remote '{remote_name}' "
        f"(model {model.name})" + (f":\n{tail}" if tail else "")
    )


def _reported_missing(output: str, md5: str) -> bool:
    """dvc lists objects it found neither in the cache nor in the remote after this header."""
    marker = output.find("Missing cache files")
    return marker >= 0 and md5 in output[marker:]


def _default_remote(root: Path) -> str:
    try:
        result = run([dvc_executable(), "remote", "default"], cwd=root)
    except (ProcessError, DvcError):
        return "(default)"
    return result.output.strip().splitlines()[-1] if result.output.strip() else "(none set)"


# --- remotes that are folders of the git repository ----------------------------------------------
# The examples' remote is .dvc/example-remote/: `dvc push` writes objects into the work tree, and
# they reach CI only when committed. Here, where the push ran, "not pushed" and "pushed but not
# committed" can be told apart by looking at the folder and at git.


def _dvc_config(root: Path) -> configparser.ConfigParser:
    """.dvc/config, then .dvc/config.local over it (DVC's order); sections as DVC names them."""
    config = configparser.ConfigParser(interpolation=None)
    for name in ("config", "config.local"):
        try:
            config.read(root / DVC_DIR / name, encoding="utf-8")
        except configparser.Error as e:
            raise DvcError(f"{root / DVC_DIR / name}: cannot read the DVC config: {e}") from e
    return config


def local_remote_folder(root: Path, remote: str | None = None) -> Path | None:
    """The folder of DVC remote ``remote`` (default: the repository's default remote) when its
    url is a local path, else None (a cloud remote, or no such remote)."""
    config = _dvc_config(root)
    name = remote or config.get("core", "remote", fallback=None)
    if not name:
        return None
    for section in config.sections():
        if section.strip("'\"").replace('"', "").split() == ["remote", name.strip("'\"")]:
            url = config.get(section, "url", fallback="").strip("'\"")
            if not url or _URL_SCHEME.match(url):
                return None
            # A relative url is relative to the config file's folder (.dvc/).
            return (root / DVC_DIR / url).resolve()
    return None


def remote_object_path(folder: Path, tracked: TrackedFile) -> Path:
    """Where a local remote keeps a file's object: files/md5/ab/cdef... (DVC 3) or ab/cdef...
    (DVC 2's md5-dos2unix objects)."""
    md5 = tracked.md5
    base = folder if tracked.hash_name == LEGACY_MD5 else folder / "files" / "md5"
    return base / md5[:2] / md5[2:]


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _git_lines(root: Path, *args: str) -> list[str] | None:
    try:
        output = run(["git", *args], cwd=root).output
    except ProcessError:
        return None  # not a git repository, or no commit yet
    return [line for line in output.splitlines() if line]


def _check_committed_pointers_reach_the_remote(
    model: ModelFolder, statuses: list[WeightStatus], root: Path, remote: str | None
) -> None:
    """DvcError when a committed, unmodified pointer's object is not committed in an in-repo
    local remote: every other checkout (CI) would fail to fetch it."""
    by_folder: dict[Path, list[TrackedFile]] = {}
    for status in statuses:
        if status.file.is_dir:
            continue
        folder = local_remote_folder(root, remote or status.file.remote)
        if folder is not None and _inside(folder, root):
            by_folder.setdefault(folder, []).append(status.file)
    if not by_folder:
        return
    files = [f for group in by_folder.values() for f in group]
    pointers = sorted({_relative(f.pointer, root) for f in files})
    objects = {
        f: _relative(remote_object_path(folder, f), root)
        for folder, group in by_folder.items()
        for f in group
    }
    tracked = _git_lines(root, "ls-files", "--", *pointers, *objects.values())
    # Pointers that differ from HEAD (staged or not), paths relative to root as ls-files gives.
    changed = _git_lines(root, "diff", "--name-only", "--relative", "HEAD", "--", *pointers)
    if tracked is None or changed is None:
        return
    changed_pointers = set(changed)
    problems = []
    for file, obj in objects.items():
        pointer = _relative(file.pointer, root)
        if pointer not in tracked or pointer in changed_pointers or obj in tracked:
            continue  # work in progress (pointer not committed yet), or all in git
        path = _relative(file.path, root)
        if (root / obj).is_file():
            problems.append(
                f"{path}: pushed but not committed (model {model.name}): `dvc push` wrote its "
                f"object to {obj}, which git does not track, while the pointer {pointer} is "
                f"committed; other checkouts (CI) cannot fetch it: `git add {obj}` and commit"
            )
        else:
            problems.append(
                f"{path}: not pushed (model {model.name}): its pointer {pointer} is committed "
                f"but the DVC remote folder has no object for it ({obj}): run `dvc push "
                f"{pointer}`, then `git add {obj}` and commit"
            )
    if problems:
        raise DvcError("\n".join(problems))
