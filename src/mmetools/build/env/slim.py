"""Slim envs: files in a packed env that nothing imports or opens at run time, by explicit rules.

Each rule names what it drops and why nothing loads it; ``slim_rule`` answers which rule (if any)
drops a member of the env (its path inside the archive). Every rule has a test that shows a file it
drops and a look-alike it keeps, and the examples' fixtures and ``mmetools test --artifact`` prove
the slimmed envs still serve. The bytes each rule saves are recorded in the env cache's record.

Never dropped: anything outside ``lib/pythonX.Y/site-packages/<package>/`` (dist-info metadata and
licences included), Python modules other than tests, shared objects, data files.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SlimRule:
    name: str
    why: str

    def drops(self, inside_package: tuple[str, ...]) -> bool:
        """``inside_package``: the member's path parts below site-packages, package first."""
        raise NotImplementedError


class _PackageTests(SlimRule):
    def drops(self, inside_package: tuple[str, ...]) -> bool:
        # A folder named tests below a package (numpy/_core/tests/...), never a top-level package.
        return "tests" in inside_package[1:-1]


class _Headers(SlimRule):
    def drops(self, inside_package: tuple[str, ...]) -> bool:
        name = inside_package[-1]
        in_include = "include" in inside_package[1:-1]
        return (in_include and name.endswith((".h", ".hpp"))) or name.endswith((".pxd", ".pyx"))


class _TypeStubs(SlimRule):
    def drops(self, inside_package: tuple[str, ...]) -> bool:
        return inside_package[-1].endswith(".pyi")


class _Docs(SlimRule):
    def drops(self, inside_package: tuple[str, ...]) -> bool:
        folders = inside_package[1:-1]
        return any(part in ("doc", "docs") for part in folders) and inside_package[-1].endswith(
            (".rst", ".md", ".html", ".txt")
        )


SLIM_RULES: tuple[SlimRule, ...] = (
    _PackageTests("package-tests", "a package's own test suite (<pkg>/**/tests/): run by pytest"),
    _Headers(
        "headers",
        "C/C++ headers under include/ and Cython .pxd/.pyx: read when compiling against the "
        "package, not when importing it",
    ),
    _TypeStubs("type-stubs", ".pyi stubs: read by type checkers, never by the interpreter"),
    _Docs("docs", ".rst/.md/.html/.txt under a package's doc/ or docs/ folder"),
)

_SITE_PACKAGES = re.compile(r"^lib/python3\.[0-9]+/site-packages/")


def slim_rule(member: str) -> SlimRule | None:
    """The rule that drops env member ``member`` (posix path in the archive), or None."""
    match = _SITE_PACKAGES.match(member)
    if match is None:
        return None
    parts = tuple(posixpath.normpath(member[match.end() :]).split("/"))
    if len(parts) < 2 or parts[0].endswith((".dist-info", ".data")):
        return None
    return next((rule for rule in SLIM_RULES if rule.drops(parts)), None)
