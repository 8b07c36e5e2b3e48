"""The key that signs evidence: only a process holding it can write evidence publish accepts.

``MMETOOLS_EVIDENCE_KEY`` (a CI secret, at least 32 characters) when it is set; otherwise a
per-user key of 32 random bytes, created once with mode 0600 as ``evidence.key`` in the mmetools
cache folder. ``mmetools build`` and ``mmetools test --artifact`` sign the evidence they write
with it (HMAC-SHA256 over the evidence's canonical JSON: artifact sha256, target, run, results);
``mmetools publish`` accepts only evidence whose signature verifies with the key it holds
(docs/publish.md, "Only what passed": what this guarantees, and against whom).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mmetools.core.errors import ConfigError
from mmetools.core.redaction import register_secret

logger = logging.getLogger(__name__)

KEY_VARIABLE = "MMETOOLS_EVIDENCE_KEY"
KEY_FILE = "evidence.key"
MIN_KEY_CHARACTERS = 32
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class EvidenceKey:
    """A signing key and where it came from (the secret itself is never shown)."""

    secret: bytes = field(repr=False)
    source: str  # "MMETOOLS_EVIDENCE_KEY" or the key file's path

    @property
    def key_id(self) -> str:
        """A public name of the key (not the key): tells "signed with another key" apart."""
        return hashlib.sha256(b"mmetools evidence key id\0" + self.secret).hexdigest()[:16]

    def sign(self, content: bytes) -> str:
        return hmac.new(self.secret, content, hashlib.sha256).hexdigest()

    def verifies(self, content: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(content), signature)


def key_file(cache_dir: Path) -> Path:
    return cache_dir / KEY_FILE


def load_evidence_key(
    cache_dir: Path, environ: Mapping[str, str] | None = None, *, create: bool
) -> EvidenceKey | None:
    """The key of this process: ``MMETOOLS_EVIDENCE_KEY``, else the per-user key file (created
    when ``create``; None when it does not exist and ``create`` is false). ConfigError for a key
    that is too short or a key file others can read."""
    environ = os.environ if environ is None else environ
    value = environ.get(KEY_VARIABLE, "")
    if value:
        if len(value) < MIN_KEY_CHARACTERS:
            raise ConfigError(
                f"{KEY_VARIABLE} is {len(value)} characters long; an evidence key needs at least "
                f"{MIN_KEY_CHARACTERS} (e.g. `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`)"
            )
        return EvidenceKey(value.encode("utf-8"), KEY_VARIABLE)
    path = key_file(cache_dir)
    if create and not path.exists():
        _create_key_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the evidence key: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path}: the evidence key must be the user's own and private (mode "
                f"{stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}): `chmod 600 {path}`, "
                "or delete it (a new key is made; evidence signed with the old one is then "
                "refused by publish)"
            )
        secret = stream.read(4096).strip()
    if len(secret) < MIN_KEY_CHARACTERS:
        raise ConfigError(
            f"{path}: not an evidence key ({len(secret)} bytes); delete it and a new one is made"
        )
    # The key file's secret is in no environment variable: mask it in every log line too.
    register_secret(secret.decode("utf-8", errors="replace"))
    return EvidenceKey(secret, str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(secrets.token_hex(32).encode() + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temporary, path)  # create-only: a concurrent first run keeps its own key
            logger.debug("created the evidence key %s", path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


__all__ = [
    "ALGORITHM",
    "KEY_FILE",
    "KEY_VARIABLE",
    "EvidenceKey",
    "key_file",
    "load_evidence_key",
]
