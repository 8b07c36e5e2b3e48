"""Files that give a secret away: never shipped silently in an artifact.

A rule matches a file or folder by its name (a case-insensitive glob) or a file by its content (a
regex over the whole file, read in chunks: memory does not grow with the file, and the chunks
overlap so a secret across a chunk boundary is still seen). Packaging
(:mod:`mmetools.build.package`) stops and names every file a rule matches; the audit
(:mod:`mmetools.build.audit`, ``mmetools inspect``) runs the same rules over every member of an
artifact and says where they could not look (a compressed member: its content is not the text a
rule reads). tests/unit/build/test_package.py has a row per rule and the near misses that pass.

A content rule is tried only around its anchors (lower-case literals every match contains), found
with a fast substring search: a regex tried at every byte of a 1 GB weight file would take minutes.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
# Longer than any match a rule needs (and than any rule reaches before or after its anchor).
OVERLAP = 4096  # >= _BEFORE_ANCHOR + _MAX_MATCH
_BEFORE_ANCHOR = 256  # how far before its anchor a match may start
_MAX_MATCH = 512  # the longest match a rule needs to see
_AFTER_ANCHOR = 16384  # the window searched after an anchor (dense anchors: few searches)


@dataclass(frozen=True)
class SecretRule:
    """One way a file gives a secret away: by its name (a case-insensitive glob on each file or
    folder name) or by its content (a regex, tried where one of its anchors occurs)."""

    id: str
    name: str | None = None
    content: re.Pattern[bytes] | None = None
    anchors: tuple[bytes, ...] = ()


def _name(rule_id: str, pattern: str) -> SecretRule:
    return SecretRule(rule_id, name=pattern)


def _content(rule_id: str, pattern: bytes, *anchors: bytes) -> SecretRule:
    return SecretRule(rule_id, content=re.compile(pattern), anchors=anchors)


_TOKEN_CHARS = rb"[A-Za-z0-9._~+/=-]"
SECRET_RULES = (
    _name("dotenv", ".env"), _name("dotenv-variant", ".env.*"),
    _name("pem", "*.pem"), _name("key-file", "*.key"), _name("pkcs12", "*.p12"),
    _name("pfx", "*.pfx"), _name("java-keystore", "*.jks"), _name("keystore", "*.keystore"),
    _name("ssh-rsa", "id_rsa*"), _name("ssh-dsa", "id_dsa*"), _name("ssh-ecdsa", "id_ecdsa*"),
    _name("ssh-ed25519", "id_ed25519*"), _name("credentials", "credentials*"),
    _name("aws-folder", ".aws"), _name("ssh-folder", ".ssh"), _name("gnupg-folder", ".gnupg"),
    _name("netrc", ".netrc"), _name("pypirc", ".pypirc"),
    _name("git-credentials", ".git-credentials"), _name("npmrc", ".npmrc"),
    _name("kubeconfig", "kubeconfig*"), _name("kube-folder", ".kube"),
    _content("aws-access-key-id", rb"AKIA[0-9A-Z]{16}", b"akia"),
    _content("aws-temporary-access-key-id", rb"ASIA[0-9A-Z]{16}", b"asia"),
    _content("aws-secret-access-key", rb"(?i)aws_secret_access_key\s*[=:]",
             b"secret"),
    _content("private-key", rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----", b"key"),
    _content("pgp-private-key", rb"-----BEGIN PGP PRIVATE KEY BLOCK-----",
             b"key"),
    _content("github-token", rb"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
             b"gh"),
    _content("github-fine-grained-token", rb"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
             b"github_pat_"),
    _content("kubeconfig-token",
             rb"(?m)^[ \t-]*(?:token|id-token|refresh-token|client-key-data)[ \t]*:[ \t]*[\"']?"
             + _TOKEN_CHARS + rb"{20,}", b"token", b"key"),
    _content("bearer-token",
             rb"(?i)authorization[\"']?[ \t]*[:=][ \t]*[\"']?bearer[ \t]+" + _TOKEN_CHARS
             + rb"{20,}", b"bearer"),
    _content("slack-webhook",
             rb"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}",
             b"hooks.slack.com"),
    _content("slack-token", rb"xox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}", b"xox"),
    _content("google-api-key", rb"AIza[0-9A-Za-z_-]{35}", b"aiza"),
    # `api_key = "..."`, `SECRET_KEY: ...`: a value of 16+ key characters holding a digit, not
    # followed by a call or an index (os.environ["API_KEY"], get_key_from_vault(...)).
    _content("api-key",
             # (a leading character class: sre then skips positions fast)
             rb"[AaSsCcPp](?i:pi[_-]?key|ecret[_-]?key|ccess[_-]?token|uth[_-]?token|"
             rb"lient[_-]?secret|rivate[_-]?token)[\"']?[ \t]*[:=][ \t]*[\"']?"
             rb"(?=[A-Za-z0-9_+/=.-]*[0-9])[A-Za-z0-9_+/=.-]{16,}(?![A-Za-z0-9_+/=.(\[-])",
             b"key", b"token", b"secret"),
)  # fmt: skip
SECRET_NAME_PATTERNS = tuple(rule.name for rule in SECRET_RULES if rule.name is not None)
CONTENT_RULES = tuple(rule for rule in SECRET_RULES if rule.content is not None)

# What a compressed member starts with: the content rules see only compressed bytes there.
_COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"),
)  # fmt: skip


def matches_name(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a file or folder name matches one of the glob ``patterns`` (case-insensitive)."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def has_secret_name(name: str) -> bool:
    return matches_name(name, SECRET_NAME_PATTERNS)


def compressed_kind(head: bytes) -> str | None:
    """ "gzip", "zip", ... when ``head`` (a file's first bytes) starts a compressed format."""
    return next((kind for magic, kind in _COMPRESSED_MAGIC if head.startswith(magic)), None)


# Each distinct anchor once, with the rules tried where it occurs.
_RULES_BY_ANCHOR: dict[bytes, tuple[SecretRule, ...]] = {}
for _rule in CONTENT_RULES:
    for _anchor in _rule.anchors:
        _RULES_BY_ANCHOR[_anchor] = (*_RULES_BY_ANCHOR.get(_anchor, ()), _rule)


def _search_chunk(window: bytes, found: set[str]) -> None:
    """Add to ``found`` the ids of the rules matching in ``window``."""
    lowered = window.lower()
    for anchor, rules in _RULES_BY_ANCHOR.items():
        waiting = [rule for rule in rules if rule.id not in found]
        position = lowered.find(anchor) if waiting else -1
        while position >= 0 and waiting:
            start = max(0, position - _BEFORE_ANCHOR)
            end = position + len(anchor) + _AFTER_ANCHOR
            for rule in list(waiting):
                assert rule.content is not None
                if rule.content.search(window, start, end):
                    found.add(rule.id)
                    waiting.remove(rule)
            # A match not found in the window starts after end - _MAX_MATCH, its anchor too.
            position = lowered.find(anchor, max(position + 1, end - _MAX_MATCH))


def content_rules_matching(chunks: Iterable[bytes]) -> tuple[str, ...]:
    """Ids of the content rules matching the bytes given in ``chunks`` (any sizes), sorted.

    Each chunk is searched with the last OVERLAP bytes of the one before it, so a secret across a
    boundary is seen; memory holds one chunk and the overlap."""
    found: set[str] = set()
    tail = b""
    for chunk in chunks:
        if not chunk:
            continue
        window = tail + chunk
        _search_chunk(window, found)
        tail = window[-OVERLAP:]
    return tuple(sorted(found))


class Readable(Protocol):
    """What read_chunks needs: a file, a tar member's stream."""

    def read(self, size: int = ..., /) -> bytes: ...


def read_chunks(stream: Readable, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def file_secret_rules(path: Path) -> tuple[str, ...]:
    """Ids of the content rules the whole file at ``path`` matches."""
    with path.open("rb") as stream:
        return content_rules_matching(read_chunks(stream))


def looks_like_secret(path: Path, size: int) -> bool:
    """Whether a content rule matches the file (read whole, in chunks, whatever its size)."""
    try:
        return bool(file_secret_rules(path))
    except OSError:
        return False  # unreadable files fail loudly when they are archived
