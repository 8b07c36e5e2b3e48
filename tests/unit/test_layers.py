"""The package's layers: imports only point down (docs/architecture.md).

core < model < build < testing < release < serving < deploy < pipeline < rendering < cli. A module may import
its own layer and any lower one; function-level imports count too (they hide a cycle, they do not
remove it). `mmetools/__init__.py` is the public facade and is left out: it re-exports lazily.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "mmetools"

LAYERS = (
    "core", "model", "build", "testing", "release", "serving", "deploy", "pipeline", "rendering",
    "cli",
)  # fmt: skip

# Rooms that only the named layers may import, whatever their own layer says: the diff is a
# release gate the pipeline and the CLI run, and rendering draws its report; no other stage uses it.
ONLY_IMPORTED_BY = {
    "mmetools.release.diff": ("mmetools.cli", "mmetools.pipeline", "mmetools.rendering")
}

LARGEST_MODULE_LINES = 500


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def imports_of(path: Path, module: str) -> list[tuple[int, tuple[str, ...]]]:
    """Each import statement of ours: its line and the modules it may load (``from a import b``
    loads ``a`` and, when b is a submodule, ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, (alias.name,)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(f"{target}.{alias.name}" for alias in node.names)
            found.append((node.lineno, (target, *names)))
    return [(line, names) for line, names in found if names[0].split(".")[0] == "mmetools"]


def _why_not(module: str, own: int, imported: str) -> str | None:
    target = layer_of(imported)
    if target is not None and target > own:
        return f"{LAYERS[own]} may not import the higher layer {LAYERS[target]}"
    for guarded, allowed in ONLY_IMPORTED_BY.items():
        inside = imported == guarded or imported.startswith(guarded + ".")
        if inside and not (module.startswith(guarded) or module.startswith(allowed)):
            return f"only {', '.join(allowed)} may import {guarded}"
    return None


def violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if module == "mmetools" or "backends" in path.relative_to(root).parts:
            continue  # the facade; Triton backends are loaded by path and import nothing of ours
        own = layer_of(module)
        if own is None:
            found.append(Violation(module, 1, "-", f"not in a layer ({', '.join(LAYERS)})"))
            continue
        for line, candidates in imports_of(path, module):
            for imported in candidates:
                why = _why_not(module, own, imported)
                if why is not None:
                    found.append(Violation(module, line, imported, why))
                    break
    return found


def test_imports_only_point_down() -> None:
    assert [str(v) for v in violations(SOURCE)] == []


def test_no_source_module_is_over_the_size_limit() -> None:
    sizes = {
        str(path.relative_to(SOURCE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in SOURCE.rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > LARGEST_MODULE_LINES} == {}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mmetools"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"build/package.py": "from mmetools.release.publish import publish\n"},
            ["mmetools.build.package:1 imports mmetools.release.publish"],
            id="packaging_imports_publishing",
        ),
        pytest.param(
            {"core/errors.py": "def f():\n    from mmetools.cli import main\n"},
            ["mmetools.core.errors:2 imports mmetools.cli"],
            id="function_level_import_upwards",
        ),
        pytest.param(
            {"release/loadtest.py": "from mmetools.release import diff\n"},
            ["mmetools.release.loadtest:1 imports mmetools.release.diff"],
            id="diff_imported_outside_cli_and_pipeline",
        ),
        pytest.param(
            {"helpers.py": "import os\n"},
            ["mmetools.helpers:1 imports -"],
            id="module_outside_every_layer",
        ),
    ],
)
def test_an_upward_import_is_reported(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    reported = [
        f"{v.module}:{v.line} imports {v.imported}" for v in violations(_tree(tmp_path, files))
    ]
    assert reported == expected


def test_a_downward_import_is_allowed(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cli/app.py": "from mmetools.release import diff\nfrom mmetools.core import errors\n",
            "pipeline.py": "from mmetools.release.diff import run\n",
            "release/diff/run.py": "from mmetools.release.diff import compare\n",
        },
    )
    assert violations(root) == []
