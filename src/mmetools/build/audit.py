"""Static audit of an artifact against its serving target: ``mmetools inspect`` and the gate that
``package``, ``test --artifact`` and ``publish`` run before they write anything.

For the tarball: the SageMaker rules (step folders at the root, no wrapper folder, exactly one
folder whose config matches the frontend's ensemble regex, a TargetModel-safe name) and the secret
rules of :mod:`mmetools.build.secrets` over every member's name and whole content (a note names the
members whose content they could not read: compressed ones, such as a packed env). For each packed
env (``<step>/python_env.tar.gz``): :mod:`mmetools.build.env_audit`.

Everything is read as one stream (the tarball, and each packed env inside it as it passes): memory
does not grow with the size of any member.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mmetools.build.env_audit import (
    EnvAudit,
    Finding,
    Severity,
    audit_env,
    numpy_problem,
)
from mmetools.build.secrets import (
    CHUNK_SIZE,
    compressed_kind,
    content_rules_matching,
    has_secret_name,
)
from mmetools.core.atomic import write_text_atomically
from mmetools.core.errors import ArtifactError
from mmetools.model.folder import ENV_ARCHIVE, MODEL_ENV_SUFFIX
from mmetools.core.targets import ServingTarget

__all__ = ["AuditReport", "EnvAudit", "Finding", "Severity", "audit_artifact", "audit_env",
           "numpy_problem", "require_audit", "require_audit_of"]  # fmt: skip

# SageMaker's Triton frontend finds the ensemble by this regex over config.pbtxt's raw text
# (triton server src/sagemaker_server.h, platform_ensemble_regex_).
_ENSEMBLE_TEXT = re.compile(rb'platform:(\s)*"ensemble"')
# What the TargetModel header may carry as a file name (S3 key characters SageMaker accepts).
_TARGET_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz$")
_CONFIG_LIMIT = 1 << 20  # a config.pbtxt is a few KB: no more is read

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditReport:
    artifact: Path
    name: str  # the artifact's name (``artifact`` may still be a temp file)
    target: ServingTarget
    envs: tuple[EnvAudit, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "artifact": self.name,
            "target": self.target.as_json(),
            "ok": self.ok,
            "envs": [env.as_json() for env in self.envs],
            "findings": [finding.as_json() for finding in self.findings],
        }


class _CountingReader:
    """A member's stream that counts and keeps what passed through it: its first bytes (for the
    compressed-format check) and, for a config.pbtxt, its text up to a limit."""

    def __init__(self, stream: IO[bytes], keep: int) -> None:
        self._stream = stream
        self._keep = keep
        self.kept = b""

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        if len(self.kept) < self._keep:
            self.kept += data[: self._keep - len(self.kept)]
        return data


def _chunks(stream: _CountingReader) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def audit_artifact(path: Path, target: ServingTarget, *, name: str | None = None) -> AuditReport:
    """Audit the artifact at ``path`` (named ``name`` when it is still a temp file)."""
    artifact_name = name or path.name
    findings: list[Finding] = []
    envs: list[EnvAudit] = []
    if not _TARGET_MODEL_NAME.match(artifact_name):
        findings.append(Finding("error", "", artifact_name, "not a TargetModel-safe name "
                                "(letters, digits, '.', '_', '-', ending .tar.gz)"))  # fmt: skip
    configs: dict[str, bytes] = {}
    roots: set[str] = set()
    files: set[str] = set()
    try:
        # "r|gz": one pass over the stream, each member read as it passes, never whole.
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                member_name = posixpath.normpath(member.name.removeprefix("./"))
                parts = member_name.split("/")
                roots.add(parts[0])
                step = parts[0] if len(parts) > 1 else ""
                if any(has_secret_name(part) for part in parts):
                    findings.append(Finding("error", step, member_name, "its name is that of a "
                                            "secret (see mmetools.build.secrets)"))  # fmt: skip
                if not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                is_config = len(parts) == 2 and parts[1] == "config.pbtxt"
                reader = _CountingReader(extracted, _CONFIG_LIMIT if is_config else 8)
                files.add(member_name)
                shared_env = len(parts) == 1 and member_name.endswith(MODEL_ENV_SUFFIX)
                if (len(parts) == 2 and parts[1] == ENV_ARCHIVE) or shared_env:
                    env, env_findings = audit_env(
                        reader,  # type: ignore[arg-type]
                        member.size,
                        step or member_name,
                        member_name,
                        target,
                    )
                    envs.append(env)
                    findings.extend(env_findings)
                    rules: tuple[str, ...] = ()
                else:
                    rules = content_rules_matching(_chunks(reader))
                findings.extend(_secret_findings(step, member_name, rules, reader.kept))
                if is_config:
                    configs[parts[0]] = reader.kept
                    if member.size > _CONFIG_LIMIT:
                        findings.append(Finding("error", step, member_name, f"{member.size} "
                                                f"bytes: more than a config.pbtxt holds"))  # fmt: skip
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: no such file") from e
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArtifactError(f"{path}: not a readable .tar.gz: {e}") from e
    findings.extend(_layout_findings(artifact_name, roots, configs))
    findings.extend(env_reference_findings(artifact_name, configs, files))
    return AuditReport(path, artifact_name, target, tuple(envs), tuple(findings))


def _secret_findings(step: str, name: str, rules: tuple[str, ...], head: bytes) -> list[Finding]:
    found = [Finding("error", step, name, f"looks like a secret (rule {rule}): remove it from "
                     "the model folder") for rule in rules]  # fmt: skip
    kind = compressed_kind(head)
    if kind is not None:
        found.append(Finding("note", step, name, f"{kind}-compressed: the secret rules did not "
                             "look inside (only at its compressed bytes)"))  # fmt: skip
    return found


_ENV_VALUE = re.compile(
    rb'key:\s*"EXECUTION_ENV_PATH"\s*,?\s*value:\s*\{\s*string_value:\s*"\$\$TRITON_MODEL_DIRECTORY/([^"]*)"'
)


def env_reference_findings(name: str, configs: dict[str, bytes], files: set[str]) -> list[Finding]:
    """Every EXECUTION_ENV_PATH names an env the artifact holds (Triton fails to load the step
    otherwise), and every env at the root is referenced (else it is shipped for nothing)."""
    findings = []
    referenced = set()
    for step, text in sorted(configs.items()):
        for match in _ENV_VALUE.finditer(text):
            wanted = posixpath.normpath(f"{step}/{match.group(1).decode(errors='replace')}")
            referenced.add(wanted)
            if wanted not in files:
                findings.append(Finding("error", step, f"{step}/config.pbtxt", f"EXECUTION_ENV_PATH "
                                        f"names {wanted}, which the artifact does not hold"))  # fmt: skip
    for unused in sorted(f for f in files if "/" not in f and f.endswith(MODEL_ENV_SUFFIX)):
        if unused not in referenced:
            findings.append(Finding("warning", "", f"{name}:{unused}", "no step's "
                                    "EXECUTION_ENV_PATH references it: shipped for nothing"))  # fmt: skip
    return findings


def _layout_findings(name: str, roots: set[str], configs: dict[str, bytes]) -> list[Finding]:
    findings = []
    # The model's one env is the only file the root may hold (beside the model folders).
    without_config = sorted(r for r in roots - set(configs) if not r.endswith(MODEL_ENV_SUFFIX))
    if without_config:
        findings.append(
            Finding(
                "error",
                "",
                name,
                "root entries without a config.pbtxt "
                f"(a wrapper folder or stray files?): {', '.join(without_config)}",
            )
        )
    ensembles = sorted(step for step, text in configs.items() if _ENSEMBLE_TEXT.search(text))
    if len(ensembles) != 1:
        findings.append(
            Finding(
                "error",
                "",
                name,
                "SageMaker's frontend needs exactly "
                f"one ensemble config at the root, found {len(ensembles)}"
                f"{': ' + ', '.join(ensembles) if ensembles else ''}",
            )
        )
    return findings


def require_audit_of(
    path: Path,
    target: ServingTarget,
    step: str,
    *,
    sha256: str,
    cache_dir: Path,
    name: str | None = None,
) -> None:
    """The gate on the artifact at ``path`` whose bytes have ``sha256``.

    A pass is remembered under ``cache_dir`` for these bytes, this target and these audit rules
    (the source of this module and of targets.py are in the key), so publishing what `package`
    just audited does not decompress it again. A failure is never remembered.
    """
    marker = _audit_marker(cache_dir, sha256, target)
    if marker.is_file():
        logger.info("%s: passed the audit for %s before", name or path.name, target.image)
        return
    require_audit(audit_artifact(path, target, name=name), step)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(marker, f"{name or path.name} {sha256} {target.image}\n")
    except OSError as e:  # a cache is an optimisation: never fail the step over it
        logger.debug("could not remember the audit of %s: %s", path, e)


def _audit_marker(cache_dir: Path, sha256: str, target: ServingTarget) -> Path:
    from mmetools.build import env_audit, secrets
    from mmetools.core import targets

    key = hashlib.sha256(f"{sha256}\n{target!r}\n".encode())
    for module in (__file__, env_audit.__file__, secrets.__file__, targets.__file__):
        key.update(Path(module).read_bytes())
    return cache_dir / "audits" / key.hexdigest()


def require_audit(report: AuditReport, step: str) -> None:
    """The gate: ArtifactError naming the step, the files and both versions on any error."""
    if report.ok:
        return
    lines = "\n".join(f"  {finding}" for finding in report.errors)
    raise ArtifactError(
        f"{step}: {report.name} fails the audit for target {report.target.image} "
        f"(Python {report.target.python_version}, glibc {report.target.glibc}); nothing was "
        f"written:\n{lines}\n(run `mmetools inspect` on it for the full report)"
    )
