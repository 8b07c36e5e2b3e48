"""What the serving image already provides: the locked requirements an env does not pack.

Triton's images install the python backend's packages into the image's Python (numpy, see
:mod:`mmetools.core.targets`). A locked requirement the image has *at the locked version* is left
out of the env; the env then layers on the image's site-packages
(``include-system-site-packages = true``), so the step imports the image's copy, byte for byte the
release the lock pinned. A requirement locked at another version than the image's (numpy 2 on
24.12) is packed as before: the env's copy comes first on ``sys.path``, nothing is substituted.

Only a lock is split: requirements.txt without a lock names no exact version to compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmetools.core.targets import ServingTarget, normalized_name

# A lock entry's first line: ``name==version`` (extras and a marker allowed), then `\` and hashes.
_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*(?P<version>[^\s;\\]+)"
)


@dataclass(frozen=True)
class LockSplit:
    """A lock divided into what the env packs and what the image provides."""

    packed_text: str  # the lock without the provided entries (header comments kept)
    packed: tuple[tuple[str, str], ...]  # (name, version) still to install
    provided: tuple[tuple[str, str], ...]  # left out: the image has them at the locked version
    differing: tuple[tuple[str, str, str], ...]  # (name, locked, image's): packed, not substituted

    @property
    def layered(self) -> bool:
        """True when the env leaves something to the image (it must see the image's packages)."""
        return bool(self.provided)

    @property
    def empty(self) -> bool:
        """True when the image provides every locked requirement: no env at all."""
        return not self.packed


def _entries(text: str) -> list[list[str]]:
    """The lock's lines grouped: a header block, then one block per requirement."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return blocks


def split_lock(text: str, target: ServingTarget) -> LockSplit:
    """Divide the lock ``text`` by what ``target``'s image provides."""
    blocks = _entries(text)
    kept = [blocks[0]]
    packed: list[tuple[str, str]] = []
    provided: list[tuple[str, str]] = []
    differing: list[tuple[str, str, str]] = []
    for block in blocks[1:]:
        match = _ENTRY.match(block[0])
        if match is None:  # not a pin: lock_problem refuses it before this is reached
            kept.append(block)
            continue
        name, version = normalized_name(match.group("name")), match.group("version")
        image_version = target.image_version(name)
        if image_version == version and ";" not in block[0]:
            provided.append((name, version))
            continue
        if image_version is not None:
            differing.append((name, version, image_version))
        packed.append((name, version))
        kept.append(block)
    packed_text = "".join(f"{line}\n" for block in kept for line in block)
    return LockSplit(packed_text, tuple(packed), tuple(provided), tuple(differing))
