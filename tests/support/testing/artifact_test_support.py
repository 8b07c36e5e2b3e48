"""What the tests of testing/test_artifact_test.py share across tiers
(or with other test files): moved here when test_sagemaker.py was split into tiers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def _tarball(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info
