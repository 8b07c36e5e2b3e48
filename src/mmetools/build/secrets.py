"""Files that give a secret away: never shipped silently in an artifact.

A rule matches a file or folder by its name (a case-insensitive glob) or a file by its content (a
regex over files of at most ``SNIFF_LIMIT`` bytes). Packaging (:mod:`mmetools.build.package`)
stops and names every file a rule matches; tests/{unit,integration}/build/test_package.py has a row per rule.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


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


def matches_name(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a file or folder name matches one of the glob ``patterns`` (case-insensitive)."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def has_secret_name(name: str) -> bool:
    return matches_name(name, SECRET_NAME_PATTERNS)


def looks_like_secret(path: Path, size: int) -> bool:
    if size > SNIFF_LIMIT:
        return False
    try:
        data = path.read_bytes()
        return any(pattern.search(data) for pattern in SECRET_CONTENT)
    except OSError:
        return False  # unreadable files fail loudly when they are archived
