"""The names of an artifact's files, as the plugin sees them in a package's output.

A copy: the source of truth is mmetools' src/mmetools/build/files.py (the plugin never imports
mmetools). tests/unit/build/test_files.py fails when the two disagree. No Pants import here, so that test
can load this file on its own.
"""

from __future__ import annotations

ARTIFACT_SUFFIX = ".tar.gz"  # <name>_<version>.tar.gz
SHA256_SUFFIX = ".sha256"  # appended to the tarball's name
MANIFEST_SUFFIX = ".manifest.json"  # appended to the tarball's name
# The evidence `mmetools test --artifact X` writes beside X on a pass (the pipeline's interface):
# appended to the tarball's name without ARTIFACT_SUFFIX.
EVIDENCE_SUFFIX = ".evidence.json"


def sha256_name(tarball: str) -> str:
    return tarball + SHA256_SUFFIX


def manifest_name(tarball: str) -> str:
    return tarball + MANIFEST_SUFFIX


def evidence_name(tarball: str) -> str:
    stem = tarball[: -len(ARTIFACT_SUFFIX)] if tarball.endswith(ARTIFACT_SUFFIX) else tarball
    return stem + EVIDENCE_SUFFIX
