"""The env cache: ``<cache_dir>/envs/<hash>/`` holds a built archive and its record.

An env is built in a temp folder beside its cache entry (``.build.tmp-<pid>-<random>``: a later run
removes the folders of builds whose process died, ``remove_interrupted_builds``) and renamed into
place (a concurrent build of the same env is as good as ours); each Python step then gets a copy (not a hard link: Triton
refuses hard links) with a record beside it, so an unchanged copy is not rewritten.

A cache hit is used only when the archive still has the size and sha256 its record gave it when it
was built (``entry_problem``): a changed entry (an extra ``.pth`` that runs code) or a truncated one
is discarded with a warning naming it and built again, never copied into a step; the copy into a
step is hashed as it is written and checked against the record too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from pathlib import Path

from mmetools.build.env.backends import SLIM_REPORT, EnvBackend, Progress
from mmetools.build.env.requirements import normalized_requirements
from mmetools.core.atomic import (
    owned_temp_folder,
    owned_temp_path,
    remove_orphaned_temps,
    write_text_atomically,
)
from mmetools.core.errors import EnvPackError, ProcessError
from mmetools.core.targets import ServingTarget
from mmetools.model.folder import ENV_ARCHIVE
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

# Beside each step's copy: which env it is, so an unchanged copy is not rewritten.
STEP_RECORD = ".python_env.json"
CACHE_SUBDIR = "envs"
CACHE_RECORD = "env.json"
# The builds in progress are owned temps of this name in the envs folder.
BUILD_NAME = "build"


def remove_interrupted_builds(envs_dir: Path) -> None:
    """Remove the build folders in the env cache whose process died (killed mid-build)."""
    remove_orphaned_temps(envs_dir / BUILD_NAME)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entry_problem(cache_entry: Path) -> str | None:
    """Why the env cache entry may not be used, or None when its archive has the size and sha256
    recorded when it was built."""
    archive = cache_entry / ENV_ARCHIVE
    record = _read_json(cache_entry / CACHE_RECORD)
    if record is None:
        return f"its record {CACHE_RECORD} is missing or unreadable"
    sha256, size = record.get("sha256"), record.get("size")
    if not isinstance(sha256, str) or not isinstance(size, int):
        return f"its record {CACHE_RECORD} gives no sha256 and size"
    try:
        found_size = archive.stat().st_size
        if found_size != size:
            return f"{ENV_ARCHIVE} holds {found_size} bytes, {size} when built (truncated?)"
        found = _file_sha256(archive)
    except OSError as e:
        return f"{ENV_ARCHIVE} cannot be read: {e.strerror or e}"
    if found != sha256:
        return f"{ENV_ARCHIVE} has sha256 {found}, {sha256} when built: changed since"
    return None


def discard_entry(cache_entry: Path) -> None:
    """Remove a damaged cache entry (renamed aside first: no one picks up half of it)."""
    aside = cache_entry.with_name(f".discarded-{cache_entry.name}-{os.getpid()}")
    try:
        os.replace(cache_entry, aside)
    except FileNotFoundError:
        return  # someone else discarded it
    remove_tree(aside, ignore_errors=True)


def _check_no_hard_links(archive: Path, context: str) -> None:
    """Triton's python backend fails on hard-link members ("Hard-link target ... does not exist")."""
    try:
        with tarfile.open(archive, "r|gz") as tar:
            links = [member.name for member in tar if member.islnk()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise EnvPackError(
            f"{context}: the packed env {archive} is not a valid .tar.gz: {e}"
        ) from e
    if links:
        shown = ", ".join(links[:10]) + (f" and {len(links) - 10} more" if len(links) > 10 else "")
        raise EnvPackError(
            f"{context}: the packed env holds hard links, which Triton cannot unpack: {shown}"
        )


def build_into_cache(
    backend: EnvBackend,
    requirements: Path,
    target: ServingTarget,
    digest: str,
    cache_entry: Path,
    model_name: str,
    progress: Progress,
    *,
    layered: bool = False,
) -> None:
    """Build in a temp folder beside the cache entry, then rename it into place atomically.
    ``layered``: ``requirements`` leaves packages to the image (see mmetools.build.env.image)."""
    envs_dir = cache_entry.parent
    envs_dir.mkdir(parents=True, exist_ok=True)
    remove_interrupted_builds(envs_dir)
    workdir = owned_temp_folder(envs_dir / BUILD_NAME)
    try:
        staged = workdir / "entry"
        staged.mkdir()
        archive = staged / ENV_ARCHIVE
        try:
            backend.build(requirements, target, workdir, archive, progress, layered=layered)
        except ProcessError as e:
            raise EnvPackError(
                f"model '{model_name}': building the {backend.name} env from {requirements} "
                f"failed: {e}"
            ) from e
        if not archive.is_file():
            raise EnvPackError(f"model '{model_name}': {backend.name} produced no {archive.name}")
        _check_no_hard_links(archive, f"model '{model_name}'")
        record = {
            "env_hash": digest,
            "backend": backend.name,
            "backend_identity": backend.identity(),
            "target": target.as_json(),
            "requirements": normalized_requirements(requirements, model_name),
            "layered_on_image": layered,
            "slimmed": _read_json(workdir / SLIM_REPORT) or {},
            "sha256": _file_sha256(archive),
            "size": archive.stat().st_size,
        }
        (staged / CACHE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(staged, cache_entry)
        except OSError:
            # Another build of the same env won the race: its entry is as good as ours, if whole.
            if entry_problem(cache_entry) is not None:
                raise
    finally:
        remove_tree(workdir, ignore_errors=True)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _copy_hashing(source: Path, destination: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as reader, destination.open("wb") as writer:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def place_in_step(cached_archive: Path, digest: str, step_dir: Path) -> bool:
    """Copy the cached archive to ``<step>/python_env.tar.gz``; False when it was already there."""
    return place_copy(cached_archive, digest, step_dir / ENV_ARCHIVE, step_dir / STEP_RECORD)


def copy_record(destination: Path) -> Path:
    """The record beside a copy of the env: ``.python_env.json`` in a step, else
    ``.<archive name>.json`` (the model's one env: ``.<model>_env.tar.gz.json``)."""
    if destination.name == ENV_ARCHIVE:
        return destination.with_name(STEP_RECORD)
    return destination.with_name(f".{destination.name}.json")


def place_copy(cached_archive: Path, digest: str, destination: Path, record_path: Path) -> bool:
    """Copy the cached archive to ``destination``; False when it was already there.

    The copy must have the sha256 the cache entry recorded when it was built (EnvPackError naming
    the cache entry otherwise); an existing copy is kept only when it has that sha256 too."""
    step_dir = destination.parent
    cache_record = _read_json(cached_archive.parent / CACHE_RECORD) or {}
    sha256 = cache_record.get("sha256")
    if not isinstance(sha256, str):
        raise EnvPackError(
            f"env cache entry {cached_archive.parent}: its record {CACHE_RECORD} gives no sha256"
        )
    record = _read_json(record_path)
    if record is not None and destination.is_file() and not destination.is_symlink():
        stat = destination.stat()
        if (
            record.get("env_hash") == digest
            and record.get("sha256") == sha256
            and stat.st_size == cache_record.get("size")
            and _file_sha256(destination) == sha256
        ):
            return False
    remove_orphaned_temps(destination)  # a copy a killed run left
    temporary = owned_temp_path(destination)
    try:
        copied = _copy_hashing(cached_archive, temporary)
        if copied != sha256:
            raise EnvPackError(
                f"env cache entry {cached_archive.parent}: {ENV_ARCHIVE} has sha256 {copied}, "
                f"{sha256} when built: it changed while it was copied into {step_dir}; "
                f"nothing was copied (run again to rebuild it)"
            )
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    stat = destination.stat()
    new_record = {"env_hash": digest, "sha256": sha256, "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns}  # fmt: skip
    write_text_atomically(record_path, json.dumps(new_record, indent=2) + "\n")
    return True
