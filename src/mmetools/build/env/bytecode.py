"""Bytecode in the env, so a stub imports without compiling at every cold start (PEP 552).

``compile_bytecode`` compiles the env's site-packages with a local interpreter of the *target's*
minor version (the magic number and cache tag are the target's) into hash-based .pyc files: their
header holds a hash of the source, not its mtime, so the bytes do not depend on when or where the
env was built. Source paths are recorded relative to the env (``lib/python3.X/site-packages/...``),
never the build folder's, and the compiler runs with a fixed hash seed (sets and frozensets of
constants are marshalled in iteration order).

CHECKED_HASH, not UNCHECKED: Python still compares the source's hash at import, so a .py changed
after packing is never run from stale bytecode; the check costs a hash of each imported source.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmetools.core import process
from mmetools.core.targets import ServingTarget

# Run by the target's Python: compile every .py below site-packages; a file that does not compile
# (a package's deliberately broken test data) is skipped, as pip does.
_COMPILE = """
import compileall, py_compile, sys
compileall.compile_dir(sys.argv[1], quiet=2, stripdir=sys.argv[2], workers=1,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"""


def site_packages(prefix: Path, target: ServingTarget) -> Path:
    return prefix / "lib" / f"python{target.python_version}" / "site-packages"


def compile_bytecode(python: Path, prefix: Path, target: ServingTarget) -> None:
    """Hash-based .pyc for every module in the env at ``prefix`` (see the module docstring)."""
    folder = site_packages(prefix, target)
    environment = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": ""}
    environment.pop("PYTHONPYCACHEPREFIX", None)
    environment.pop("SOURCE_DATE_EPOCH", None)  # would force hash-based for all; set explicitly
    process.run(
        [str(python), "-I", "-c", _COMPILE, str(folder), str(prefix)],
        context=f"compiling bytecode with {python}",
        env=environment,
    )


def is_hash_based_pyc(data: bytes) -> bool:
    """PEP 552: bit 0 of the header's flags word marks a hash-based .pyc."""
    return len(data) >= 16 and int.from_bytes(data[4:8], "little") & 0b1 == 1
