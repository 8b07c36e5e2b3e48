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
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from mmetools.build.audit import require_audit_of
from mmetools.build.envpack import EnvBackend, PackedEnv, pack_env
from mmetools.core.errors import ArtifactError, MmetoolsError, ValidationFailed
from mmetools.core.atomic import move_set_into_place, temporary_path_beside
from mmetools.build.files import ArtifactFiles
from mmetools.build.manifest import (
    Manifest,
    ManifestMember,
    mmetools_version,
    sha256_line,
    write_manifest,
)
from mmetools.model.config import RepositoryModel
from mmetools.model.folder import ENV_ARCHIVE, EXECUTION_ENV_KEY, ModelFolder, weight_paths
from mmetools.build.verified import remember_verified
from mmetools.build.parallel_gzip import BLOCK_SIZE, DEFAULT_LEVEL, DEFLATE_LIBRARY, ParallelGzipWriter
from mmetools.core.settings import Settings

logger = logging.getLogger(__name__)

FILE_MODE = 0o644
DIR_MODE = 0o755
MTIME = 0
ENSEMBLE_VERSION_DIR = "1"


@dataclass(frozen=True)
class SecretRule:
    """One way a file gives a secret away: by its name (a case-insensitive glob on each file or
    folder name) or by its content (a regex over files of at most SNIFF_LIMIT bytes)."""

    id: str
    name: str | None = None
    content: re.Pattern[bytes] | None = None


def _name(rule_id: str, pattern: str) -> SecretRule:
    return SecretRule(rule_id, name=pattern)


def _content(rule_id: str, pattern: bytes) -> SecretRule:
    return SecretRule(rule_id, content=re.compile(pattern))


# Never shipped silently: packaging stops and names the file. tests/test_artifact.py has a row
# per rule.
SECRET_RULES = (
    _name("dotenv", ".env"), _name("dotenv-variant", ".env.*"),
    _name("pem", "*.pem"), _name("key-file", "*.key"), _name("pkcs12", "*.p12"),
    _name("pfx", "*.pfx"), _name("java-keystore", "*.jks"), _name("keystore", "*.keystore"),
    _name("ssh-rsa", "id_rsa*"), _name("ssh-dsa", "id_dsa*"), _name("ssh-ecdsa", "id_ecdsa*"),
    _name("ssh-ed25519", "id_ed25519*"), _name("credentials", "credentials*"),
    _name("aws-folder", ".aws"), _name("ssh-folder", ".ssh"), _name("gnupg-folder", ".gnupg"),
    _name("netrc", ".netrc"), _name("pypirc", ".pypirc"),
    _name("git-credentials", ".git-credentials"), _name("npmrc", ".npmrc"),
    _content("aws-access-key-id", rb"AKIA[0-9A-Z]{16}"),
    _content("aws-temporary-access-key-id", rb"ASIA[0-9A-Z]{16}"),
    _content("aws-secret-access-key", rb"(?i)aws_secret_access_key\s*[=:]"),
    _content("private-key", rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    _content("pgp-private-key", rb"-----BEGIN PGP PRIVATE KEY BLOCK-----"),
)  # fmt: skip
SECRET_NAME_PATTERNS = tuple(rule.name for rule in SECRET_RULES if rule.name is not None)
SECRET_CONTENT = tuple(rule.content for rule in SECRET_RULES if rule.content is not None)
SNIFF_LIMIT = 1 << 20
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


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def _looks_like_secret(path: Path, size: int) -> bool:
    if size > SNIFF_LIMIT:
        return False
    try:
        data = path.read_bytes()
        return any(pattern.search(data) for pattern in SECRET_CONTENT)
    except OSError:
        return False  # unreadable files fail loudly when they are archived


def _walk(
    folder: Path, archive_name: str, skip: frozenset[str], offenders: _Offenders
) -> Iterator[Member]:
    """Members below ``folder`` (not including it), depth first, in sorted order.

    Iterative (an explicit stack), so folder depth is limited by the file system, not by
    Python's recursion limit."""
    stack: list[tuple[Path, str]] = [(folder, archive_name)]
    while stack:
        here, here_name = stack.pop()
        with os.scandir(here) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        below: list[tuple[Path, str]] = []
        for entry in entries:
            name = f"{here_name}/{entry.name}"
            # Secrets first: a .env is refused, not quietly dropped as a dotfile.
            if _matches(entry.name, SECRET_NAME_PATTERNS):
                offenders.secrets.append(name)
                continue
            if _matches(entry.name, EXCLUDED_NAME_PATTERNS) or name in skip:
                logger.debug("leaving out %s", name)
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                offenders.symlinks.append(name)
            elif stat.S_ISDIR(info.st_mode):
                yield Member(name, "dir", Path(entry.path))
                below.append((Path(entry.path), name))
            elif stat.S_ISREG(info.st_mode):
                if info.st_nlink > 1:
                    offenders.hard_links.append(name)
                elif _looks_like_secret(Path(entry.path), info.st_size):
                    offenders.secrets.append(f"{name} (content)")
                else:
                    yield Member(name, "file", Path(entry.path), info.st_size)
            else:
                offenders.special.append(name)
        stack.extend(reversed(below))


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
    error = offenders.error(model)
    if error is not None:
        raise error
    return sorted(members, key=lambda member: member.sort_key)


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


def validate_model(model: ModelFolder) -> None:
    """Static validation of the model folder; ValidationFailed with every error (warnings are
    logged)."""
    from mmetools.model.validation import validate_path

    problems = validate_path(model.path)
    errors = [problem for problem in problems if problem.is_error]
    for problem in problems:
        if not problem.is_error:
            logger.warning("%s", problem)
    if errors:
        raise ValidationFailed([str(problem) for problem in errors])


def ensure_weights(model: ModelFolder) -> None:
    """Make DVC-tracked files match their pointers (pulling what is absent), then check that
    every inferencer's weight file is there. Weights that differ from their pointer are refused
    by the DVC layer: an artifact ships the bytes git and DVC record, not local edits."""
    from mmetools.model.dvc import fetch_weights

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


def _configs_referencing_env(steps: list[RepositoryModel]) -> list[str]:
    return [str(step.config_path) for step in steps if EXECUTION_ENV_KEY in step.config.parameters]


def prepare_env(
    model: ModelFolder,
    settings: Settings,
    *,
    with_env: bool = True,
    progress: Progress | None = None,
    backend: EnvBackend | None = None,
) -> PackedEnv | None:
    """Pack the model's env into its Python steps (cached); None when it ships without one
    (no Python steps, or ``with_env=False`` and no config points at an env)."""
    python_steps = model.python_steps()
    if with_env and python_steps:
        return pack_env(model, settings, progress=progress, backend=backend)
    referencing = _configs_referencing_env(python_steps)
    if referencing:
        raise ArtifactError(
            f"model '{model.name}': --no-env leaves {ENV_ARCHIVE} out, but these configs "
            f"set EXECUTION_ENV_PATH and would fail to load: {', '.join(referencing)}; "
            f"package with the env or remove the parameter"
        )
    return None


def package_model(
    model: ModelFolder,
    out_dir: Path,
    settings: Settings,
    *,
    with_env: bool = True,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    validate: bool = True,
    fetch_weights: bool = True,
    progress: Progress | None = None,
    env_backend: EnvBackend | None = None,
) -> Artifact:
    """Validate, fetch weights, pack the env (cached), then write the artifact and its sidecars."""

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    model.ref()  # a bad model_version.txt is the first thing to say
    if validate:
        report("validating")
        validate_model(model)
    if fetch_weights:
        report("checking weights")
        ensure_weights(model)
    packed = prepare_env(model, settings, with_env=with_env, progress=progress, backend=env_backend)
    env_hash = packed.env_hash if packed is not None else None
    backend_name = packed.backend if packed is not None else None
    return write_artifact(
        model,
        out_dir,
        settings,
        env_hash=env_hash,
        env_backend=backend_name,
        level=level,
        threads=threads,
        progress=progress,
    )


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

    report(f"writing {final.name} ({len(members)} members)")
    started = time.perf_counter()
    temporary: Path | None = None
    sidecars: dict[Path, Path] = {}  # temp name -> final name
    try:
        descriptor, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=out_dir)
        temporary = Path(name)
        with os.fdopen(descriptor, "wb", buffering=BLOCK_SIZE) as stream:
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
            model_folder=_relative(model.path, settings.root),
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
