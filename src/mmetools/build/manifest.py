"""The JSON manifest beside every artifact: ``<name>_<version>.tar.gz.manifest.json`` (the name
comes from build/files.py, locally and in a store); one typed value, read, written and validated
here only.

The packaged manifest says what is in the tarball: the model and version, the sha256 and size of
the artifact and of every member, the packed env's hash, the serving target and the tool versions.
It holds no timestamp, no git state and no absolute path, so it is a pure function of the inputs
like the tarball. Provenance (commit, branch, dirty state, CI run) and the test evidence are added
to the copy that ``mmetools publish`` sends (``Manifest.published``), never to the build's files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from mmetools.build.files import ArtifactFiles
from mmetools.core.atomic import write_bytes_atomically
from mmetools.core.errors import ArtifactError
from mmetools.core.jsontext import parse_json

MANIFEST_FORMAT = 2
UNKNOWN = "unknown"

__all__ = [
    "MANIFEST_FORMAT",
    "Manifest",
    "file_sha256",
    "ManifestMember",
    "member_differences",
    "mmetools_version",
    "read_manifest",
    "sha256_line",
    "write_bytes_atomically",
    "write_manifest",
]


@dataclass(frozen=True)
class ManifestMember:
    path: str
    type: Literal["dir", "file"]
    size: int = 0
    sha256: str | None = None  # None for folders

    def as_json(self) -> dict[str, Any]:
        if self.type == "dir":
            return {"path": self.path, "type": "dir"}
        return {"path": self.path, "type": "file", "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    model: str
    version: int
    sha256: str
    size: int
    uncompressed_size: int
    members: tuple[ManifestMember, ...]
    env_hash: str | None = None
    env_backend: str | None = None
    env_python: str | None = None
    triton_version: str = UNKNOWN
    mmetools_version: str = UNKNOWN
    target: dict[str, Any] | None = None  # the serving target's record (targets.ServingTarget)
    compression: dict[str, Any] = field(default_factory=dict)
    model_folder: str = ""  # relative to the repository root
    # Only in a published manifest (see Manifest.published):
    provenance: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None

    @property
    def artifact(self) -> str:
        return ArtifactFiles(self.model, self.version).tarball

    def published(self, provenance: dict[str, Any], evidence: dict[str, Any]) -> Manifest:
        return replace(self, provenance=provenance, evidence=evidence)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "version": self.version,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "size": self.size,
            "uncompressed_size": self.uncompressed_size,
            "env_hash": self.env_hash,
            "env_backend": self.env_backend,
            "env_python": self.env_python,
            "target": self.target,
            "mmetools_version": self.mmetools_version,
            "triton_version": self.triton_version,
            "compression": self.compression,
            "model_folder": self.model_folder,
            "members": [member.as_json() for member in self.members],
        }
        if self.provenance is not None:
            data["provenance"] = self.provenance
        if self.evidence is not None:
            data["evidence"] = self.evidence
        return data

    def text(self) -> str:
        return json.dumps(self.as_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: object, source: str) -> Manifest:
        """Validate ``data``; ArtifactError naming ``source`` and the field for any violation."""
        fields = _Fields(data, source)
        fields.require_format()
        model = fields.text("model")
        version = fields.integer("version", minimum=1)
        manifest = cls(
            model=model,
            version=version,
            sha256=fields.sha256("sha256"),
            size=fields.integer("size", minimum=0),
            uncompressed_size=fields.integer("uncompressed_size", minimum=0),
            members=fields.members(),
            env_hash=fields.optional_text("env_hash"),
            env_backend=fields.optional_text("env_backend"),
            env_python=fields.optional_text("env_python"),
            triton_version=fields.text("triton_version"),
            mmetools_version=fields.text("mmetools_version"),
            target=fields.optional_object("target"),
            compression=fields.optional_object("compression") or {},
            model_folder=fields.text("model_folder"),
            provenance=fields.optional_object("provenance"),
            evidence=fields.optional_object("evidence"),
        )
        artifact = fields.text("artifact")
        if artifact != manifest.artifact:
            raise ArtifactError(
                f"{source}: field 'artifact' is {artifact!r}, but model and version make "
                f"{manifest.artifact!r}"
            )
        return manifest


class _Fields:
    def __init__(self, data: object, source: str) -> None:
        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: a manifest must be a JSON object")
        self.data: dict[str, Any] = data
        self.source = source

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise ArtifactError(
                f"{self.source}: field '{key}' is missing (not a manifest written by "
                "`mmetools build`; rebuild the artifact)"
            )
        return self.data[key]

    def _wrong(self, key: str, expected: str) -> ArtifactError:
        return ArtifactError(
            f"{self.source}: field '{key}' must be {expected}, got {self.data.get(key)!r}"
        )

    def require_format(self) -> None:
        if self._get("format") != MANIFEST_FORMAT:
            raise ArtifactError(
                f"{self.source}: field 'format' is {self.data['format']!r}, this mmetools reads "
                f"format {MANIFEST_FORMAT}; rebuild the artifact with `mmetools build`"
            )

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self._wrong(key, "a non-empty string")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self._wrong(key, "a non-empty string or null")
        return None if value is None else str(value)

    def integer(self, key: str, minimum: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._wrong(key, f"an integer >= {minimum}")
        return int(value)

    def sha256(self, key: str) -> str:
        value = self._get(key)
        if not _is_sha256(value):
            raise self._wrong(key, "64 lowercase hex digits")
        return str(value)

    def optional_object(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._wrong(key, "an object or null")
        return None if value is None else dict(value)

    def members(self) -> tuple[ManifestMember, ...]:
        value = self._get("members")
        if not isinstance(value, list) or not value:
            raise self._wrong("members", "a non-empty list")
        members = []
        for index, entry in enumerate(value):
            where = f"members[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ArtifactError(f"{self.source}: field '{where}' needs a 'path' string")
            if entry.get("type") == "dir":
                members.append(ManifestMember(entry["path"], "dir"))
                continue
            size, sha = entry.get("size"), entry.get("sha256")
            if entry.get("type") != "file" or not isinstance(size, int) or not _is_sha256(sha):
                raise ArtifactError(
                    f"{self.source}: field '{where}' ({entry['path']}) must be a dir, or a file "
                    "with an integer 'size' and a 'sha256'"
                )
            members.append(ManifestMember(entry["path"], "file", size, sha))
        return tuple(members)


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest lists members: megabytes at most


def read_manifest(path: Path) -> Manifest:
    """Load and validate a manifest; ArtifactError naming the file and the field."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes: not a manifest")
        data = parse_json(raw)
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: manifest not found (build it with `mmetools build`)") from e
    except IsADirectoryError as e:
        raise ArtifactError(f"{path}: a folder, not a manifest file") from e
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise ArtifactError(f"{path}: not a readable JSON manifest: {reason}") from e
    return Manifest.from_json(data, str(path))


def write_manifest(path: Path, manifest: Manifest) -> None:
    write_bytes_atomically(path, manifest.text().encode())


def member_differences(old: Manifest, new: Manifest) -> list[str]:
    """One line per member that differs between two builds ('added', 'removed', 'changed')."""
    before = {m.path: m for m in old.members}
    after = {m.path: m for m in new.members}
    lines = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            lines.append(f"removed {path}")
        elif path not in before:
            lines.append(f"added {path}")
        elif before[path] != after[path]:
            lines.append(f"changed {path}")
    return lines


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def mmetools_version() -> str:
    try:
        return metadata.version("mmetools")
    except metadata.PackageNotFoundError:
        return UNKNOWN


def sha256_line(sha256: str, filename: str) -> str:
    """One line in ``sha256sum`` format, so ``sha256sum -c`` checks the artifact in its folder."""
    return f"{sha256}  {filename}\n"
