"""``<name>_<version>.tar.gz``: the artifact a SageMaker multi-model endpoint loads.

Layout (docs/mme-contract.md): the tar root holds the model's Triton model folders, the step folders
and exactly one ensemble folder, as siblings; every one has a numeric version folder (the
ensemble's empty ``1/`` is created here, git keeps no empty folders). Nothing else goes in: no
top-level files of the model folder, no DVC pointers, tests, caches, editor or OS junk or
dotfiles. Files that look like secrets, symlinks, hard links and special files are refused with
every offender named.

Deterministic: members sorted by path, mtime 0, uid/gid 0, no user/group names, mode 0644 for
files and 0755 for folders (nothing in a Triton model folder is executed as a program, and fixed
modes keep the bytes independent of umask and git's core.fileMode), PAX format, and a gzip
stream with a fixed header written by ``parallel_gzip`` (same bytes for any number of threads).
Built from the same files, the artifact has the same sha256.

The tarball is streamed (no file is ever held in memory) into a temp file in the output folder,
fsynced and renamed into place; its ``.sha256`` and manifest (named by build/files.py) are
renamed into place just before it, so an artifact under its final name always has its sidecars.

This module only writes: the model folder given is ready (validated, weights fetched, env packed
into its Python steps by the earlier steps of :mod:`mmetools.pipeline`). Which files count as
secrets lives in :mod:`mmetools.build.secrets`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from mmetools.build.audit import require_audit_of
from mmetools.core.errors import ArtifactError, MmetoolsError
from mmetools.core.atomic import (
    move_set_into_place,
    remove_orphaned_temps,
    temporary_path_beside,
)
from mmetools.build.files import ArtifactFiles
from mmetools.build.manifest import (
    Manifest,
    ManifestMember,
    mmetools_version,
    sha256_line,
    write_manifest,
)
from mmetools.model.config import RepositoryModel
from mmetools.model.folder import (
    ENV_ARCHIVE,
    EXECUTION_ENV_KEY,
    ModelFolder,
    model_env_archive,
    model_env_value,
)
from mmetools.build.verified import remember_verified
from mmetools.build.parallel_gzip import (
    BLOCK_SIZE,
    DEFAULT_LEVEL,
    DEFLATE_LIBRARY,
    DICTIONARY_SIZE,
    ParallelGzipWriter,
)
from mmetools.build.secrets import has_secret_name, looks_like_secret, matches_name
from mmetools.core.settings import Settings
from mmetools.core.tree import TreeEntry, walk

logger = logging.getLogger(__name__)

FILE_MODE = 0o644
DIR_MODE = 0o755
MTIME = 0
ENSEMBLE_VERSION_DIR = "1"


# Left out without a word: not part of a Triton model folder.
EXCLUDED_NAME_PATTERNS = (
    ".*",  # dotfiles and dot-folders: .gitignore, .DS_Store, .idea, .vscode, .ipynb_checkpoints
    "__pycache__", "*.pyc", "*.pyo", "tests", "*.dvc",
    "*~", "*.swp", "*.swo", "#*#", "Thumbs.db", "desktop.ini", "__MACOSX",
)  # fmt: skip

MemberKind = Literal["dir", "file"]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Member:
    """One tar member: its path inside the archive and where its bytes come from."""

    name: str  # posix path inside the archive, no trailing slash
    kind: MemberKind
    source: Path | None  # None for folders the packager creates (the ensemble's 1/)
    size: int = 0

    @property
    def sort_key(self) -> tuple[str, ...]:
        return tuple(self.name.split("/"))


@dataclass
class _Offenders:
    secrets: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    hard_links: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)

    def error(self, model: ModelFolder) -> ArtifactError | None:
        lines = []
        if self.secrets:
            lines.append(
                "files that look like secrets (remove them from the model folder): "
                + ", ".join(sorted(self.secrets))
            )
        if self.symlinks:
            lines.append(
                "symlinks (replace them with the files; for DVC-tracked weights run "
                "`dvc config cache.type copy` and `dvc checkout --relink`): "
                + ", ".join(sorted(self.symlinks))
            )
        if self.hard_links:
            lines.append(
                "hard links (copy the files instead; for DVC-tracked weights run "
                "`dvc config cache.type copy` and `dvc checkout --relink`): "
                + ", ".join(sorted(self.hard_links))
            )
        if self.special:
            lines.append("sockets, pipes or devices: " + ", ".join(sorted(self.special)))
        if not lines:
            return None
        return ArtifactError(
            f"{model.path}: cannot package model '{model.name}':\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class MemberDigest:
    name: str
    kind: MemberKind
    size: int
    sha256: str | None  # None for folders


@dataclass(frozen=True)
class TarballResult:
    sha256: str
    size: int
    uncompressed_size: int
    members: tuple[MemberDigest, ...]


@dataclass(frozen=True)
class Artifact:
    """A built artifact and its sidecars."""

    path: Path
    sha256: str
    manifest_path: Path
    size: int
    sha256_path: Path
    uncompressed_size: int
    seconds: float  # time spent writing the tarball
    env_hash: str | None


def _walk(
    folder: Path, archive_name: str, skip: frozenset[str], offenders: _Offenders
) -> Iterator[Member]:
    """Members below ``folder`` (not including it), depth first, in sorted order (the repository's
    one walker, :func:`mmetools.core.tree.walk`: no recursion, whatever the depth)."""

    def left_out(entry: TreeEntry) -> bool:
        # Secrets first: a .env is refused, not quietly dropped as a dotfile.
        return (
            has_secret_name(entry.name)
            or matches_name(entry.name, EXCLUDED_NAME_PATTERNS)
            or f"{archive_name}/{entry.relative}" in skip
        )

    for entry in walk(folder, enter=lambda entry: not left_out(entry)):
        name = f"{archive_name}/{entry.relative}"
        if has_secret_name(entry.name):
            offenders.secrets.append(name)
        elif left_out(entry):
            logger.debug("leaving out %s", name)
        elif entry.is_symlink:
            offenders.symlinks.append(name)
        elif entry.is_dir:
            yield Member(name, "dir", entry.path)
        elif entry.is_file:
            if entry.info.st_nlink > 1:
                offenders.hard_links.append(name)
            elif looks_like_secret(entry.path, entry.info.st_size):
                offenders.secrets.append(f"{name} (content)")
            else:
                yield Member(name, "file", entry.path, entry.info.st_size)
        else:
            offenders.special.append(name)


def collect_members(model: ModelFolder, *, include_env: bool = True) -> list[Member]:
    """Every member of the model's artifact, sorted; ArtifactError naming each refused file."""
    repository = model.repository()
    ensemble = model.ensemble()
    steps = sorted(repository.values(), key=lambda m: m.name)
    skip = frozenset() if include_env else frozenset(f"{m.name}/{ENV_ARCHIVE}" for m in steps)
    offenders = _Offenders()
    members: list[Member] = []
    for step in steps:
        if step.path.is_symlink():  # would take in a folder from outside the model
            offenders.symlinks.append(step.name)
            continue
        members.append(Member(step.name, "dir", step.path))
        members.extend(_walk(step.path, step.name, skip, offenders))
        if not step.versions:
            if step.name != ensemble.name:
                raise ArtifactError(
                    f"{step.path}: step '{step.name}' of model '{model.name}' has no numeric "
                    f"version folder (e.g. {step.name}/1/)"
                )
            members.append(Member(f"{step.name}/{ENSEMBLE_VERSION_DIR}", "dir", None))
    shared = shared_env_member(model, steps) if include_env else None
    if shared is not None:
        members.append(shared)
    error = offenders.error(model)
    if error is not None:
        raise error
    return sorted(members, key=lambda member: member.sort_key)


def shared_env_member(model: ModelFolder, steps: list[RepositoryModel]) -> Member | None:
    """The model's one env (``<model>_env.tar.gz``, beside the step folders at the artifact's
    root) when a step's config references it; None otherwise (an unreferenced copy left by an
    earlier build is not shipped)."""
    value = model_env_value(model.name)
    if not any(
        str(step.config.parameters[EXECUTION_ENV_KEY].string_value) == value
        for step in steps
        if EXECUTION_ENV_KEY in step.config.parameters
    ):
        return None
    path = model.path / model_env_archive(model.name)
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ArtifactError(
            f"{path}: missing; the configs of model '{model.name}' reference {value} "
            "(run the env step: `mmetools env` or `mmetools package` with the env)"
        ) from None
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        raise ArtifactError(f"{path}: not a regular file with one link")
    return Member(path.name, "file", path, info.st_size)


class _HashingReader:
    """Reads a member's file for tarfile while hashing it (one pass over the bytes)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data


def _tarinfo(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if member.kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = DIR_MODE
    else:
        info.type = tarfile.REGTYPE
        info.mode = FILE_MODE
        info.size = member.size
    return info


# Files this large start at a deflate block boundary of the stream (see _align): a shared file
# (a family's packed env) is then deflated once per process, whatever precedes it.
ALIGN_MIN_SIZE = BLOCK_SIZE
_PAD_KEY = "comment"  # a PAX keyword every reader ignores (POSIX pax: "comment")


def _align(info: tarfile.TarInfo, offset: int, tar: tarfile.TarFile) -> None:
    """Pad ``info``'s PAX header so its data starts at a multiple of BLOCK_SIZE, after at least
    a deflate window of padding and headers (so the block's dictionary is the same wherever
    the member sits); the records fill their blocks exactly (no varying NUL tail)."""
    bare = len(info.tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors))
    target = -(offset + 3 * tarfile.BLOCKSIZE) % BLOCK_SIZE + 3 * tarfile.BLOCKSIZE
    if target < DICTIONARY_SIZE + 3 * tarfile.BLOCKSIZE:
        target += BLOCK_SIZE
    estimate = max(0, target - bare - tarfile.BLOCKSIZE - 16)  # records minus "NNN comment=\n"
    for length in range(max(0, estimate - 64), estimate + 64):
        info.pax_headers = {_PAD_KEY: "x" * length}
        header = info.tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors)
        # The byte before the member's own header block ends the records: no NUL padding.
        if len(header) == target and header[-tarfile.BLOCKSIZE - 1] == ord("\n"):
            return
    info.pax_headers = {}  # pragma: no cover - every target is reachable; unaligned is correct


def write_tarball(
    members: list[Member],
    output: BinaryIO,
    *,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
) -> TarballResult:
    """Stream ``members`` as a deterministic .tar.gz into ``output``."""
    digests: list[MemberDigest] = []
    gzip_stream = ParallelGzipWriter(output, level=level, threads=threads)
    try:
        # copybufsize: read weight files in blocks the size the compressor works in.
        with tarfile.open(
            fileobj=gzip_stream,  # type: ignore[call-overload]
            mode="w",
            format=tarfile.PAX_FORMAT,
            copybufsize=BLOCK_SIZE,
        ) as tar:
            for member in members:
                info = _tarinfo(member)
                if member.kind == "file" and member.size >= ALIGN_MIN_SIZE:
                    _align(info, tar.offset, tar)
                if member.kind == "dir" or member.source is None:
                    tar.addfile(info)
                    digests.append(MemberDigest(member.name, "dir", 0, None))
                    continue
                try:
                    opened = member.source.open("rb")
                except OSError as e:
                    raise ArtifactError(f"{member.source}: cannot read: {e.strerror or e}") from e
                with opened as stream:
                    reader = _HashingReader(stream)
                    try:
                        tar.addfile(info, reader)
                    except OSError as e:
                        if isinstance(e, tarfile.ReadError) or "unexpected end" in str(e):
                            raise ArtifactError(
                                f"{member.source}: changed while it was being packaged"
                            ) from e
                        raise
                    if os.fstat(stream.fileno()).st_size != member.size:
                        raise ArtifactError(f"{member.source}: changed while it was being packaged")
                digests.append(
                    MemberDigest(member.name, "file", member.size, reader.digest.hexdigest())
                )
        gzip_stream.close()
    except BaseException:
        gzip_stream.abort()
        raise
    return TarballResult(
        sha256=gzip_stream.sha256,
        size=gzip_stream.compressed_size,
        uncompressed_size=gzip_stream.uncompressed_size,
        members=tuple(digests),
    )


def _output_error(out_dir: Path, name: str, error: OSError) -> ArtifactError:
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return ArtifactError(f"{out_dir}: cannot write {name}: {reason}; nothing was written")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def serving_target_record(settings: Settings) -> dict[str, Any]:
    """What the artifact is built for, as recorded in its manifest."""
    return settings.target.as_json()


def write_artifact(
    model: ModelFolder,
    out_dir: Path,
    settings: Settings,
    *,
    env_hash: str | None,
    env_backend: str | None,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Artifact:
    """Write the tarball and its .sha256 and manifest into ``out_dir`` (the folder already holds
    its weights and, when ``env_hash`` is set, its packed env in every Python step)."""

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    ref = model.ref()
    members = collect_members(model, include_env=env_hash is not None)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _output_error(out_dir, ref.artifact_name, e) from e
    files = ArtifactFiles.of(ref).local(out_dir)
    final, sha256_path, manifest_path = files.tarball, files.sha256, files.manifest
    for path in (final, sha256_path, manifest_path):
        remove_orphaned_temps(path)  # partial files of a package run that was killed

    report(f"writing {final.name} ({len(members)} members)")
    started = time.perf_counter()
    temporary: Path | None = None
    sidecars: dict[Path, Path] = {}  # temp name -> final name
    try:
        temporary = temporary_path_beside(final)
        with temporary.open("wb", buffering=BLOCK_SIZE) as stream:
            result = write_tarball(members, stream, level=level, threads=threads)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        seconds = time.perf_counter() - started
        # The audit gate: an artifact that would not load in the target image is not written.
        logger.info("%s: auditing against the serving target", model.name)
        require_audit_of(temporary, settings.target, "package", sha256=result.sha256,
                         cache_dir=settings.cache_dir, name=final.name)  # fmt: skip
        manifest = Manifest(
            model=ref.name,
            version=ref.version,
            sha256=result.sha256,
            size=result.size,
            uncompressed_size=result.uncompressed_size,
            members=tuple(ManifestMember(d.name, d.kind, d.size, d.sha256) for d in result.members),
            env_hash=env_hash,
            env_backend=env_backend,
            env_python=settings.target.python_version if env_hash else None,
            triton_version=settings.triton.version,
            mmetools_version=mmetools_version(),
            target=serving_target_record(settings),
            # Deflate output is fixed for a given deflate library release: record it to explain
            # a differing sha256 between machines (member sha256s still match).
            compression={"format": "gzip", "level": level, "block_size": BLOCK_SIZE,
                         "library": DEFLATE_LIBRARY},  # fmt: skip
            # The committed folder (a tenant's: its family), whose git state publish records.
            model_folder=_relative(model.source_dir, settings.root),
        )
        # All three under temp names first, then moved together with the tarball last, so an
        # interruption never leaves this build's sidecars beside an earlier build's tarball.
        sidecars[temporary_path_beside(manifest_path)] = manifest_path
        sidecars[temporary_path_beside(sha256_path)] = sha256_path
        new_manifest, new_sha256 = sidecars
        write_manifest(new_manifest, manifest)
        new_sha256.write_bytes(sha256_line(result.sha256, final.name).encode())
        move_set_into_place(sidecars, (temporary, final))
        sidecars.clear()
        temporary = None
        remember_verified(final, result.sha256, settings.cache_dir)
    except MmetoolsError:
        raise
    except OSError as e:
        raise _output_error(out_dir, final.name, e) from e
    finally:
        for path in [*sidecars, *([temporary] if temporary is not None else [])]:
            path.unlink(missing_ok=True)
    report(f"wrote {final.name}: {result.size} bytes, sha256 {result.sha256[:12]}")
    return Artifact(
        path=final,
        sha256=result.sha256,
        manifest_path=manifest_path,
        size=result.size,
        sha256_path=sha256_path,
        uncompressed_size=result.uncompressed_size,
        seconds=seconds,
        env_hash=env_hash,
    )
