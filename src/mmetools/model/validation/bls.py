"""Models a Python step calls through BLS (``pb_utils.InferenceRequest(model_name=...)``).

Triton loads such a step without checking the names: the call fails at request time when the
model is not loaded. On a SageMaker multi-model endpoint only the artifact's models are loaded
(server issue 5452), so each model a step requests must be a folder of the same repository. A
name the code builds at run time cannot be checked: a warning says so.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from mmetools.model.config import PYTHON_BACKEND, backend_of, clipped
from mmetools.model.validation.problems import WARNING, Problem, join
from mmetools.model.validation.repository import Repository

_REQUEST_CLASSES = frozenset({"InferenceRequest"})


def bls_problems(repository: Repository) -> Iterator[Problem]:
    available = set(repository.models) | repository.auto_completed
    for name, model in repository.models.items():
        if backend_of(model.config) != PYTHON_BACKEND:
            continue
        filename = str(model.config.default_model_filename) or "model.py"
        for version in model.versions:
            path = model.path / str(version) / filename
            if path.is_file():
                yield from _file_problems(path, name, available)


def _file_problems(path: Path, step: str, available: set[str]) -> Iterator[Problem]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return  # not this check's business: the step fails to load and says why
    constants = _module_constants(tree)
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and _callee(call.func) in _REQUEST_CLASSES):
            continue
        argument = _model_name_argument(call)
        if argument is None:
            continue
        requested = _constant_text(argument, constants)
        line = getattr(call, "lineno", None)
        if requested is None:
            yield Problem(
                path,
                f"{step} requests a model through BLS whose name is built at run time "
                f"({clipped(ast.unparse(argument), 80)}); it cannot be checked, and a multi-model "
                "endpoint serves only the models in this artifact",
                WARNING,
                line,
            )
        elif requested not in available:
            yield Problem(
                path,
                f"{step} requests model '{clipped(requested, 80)}' through BLS, but it is not "
                "a model folder here, so it is not in the artifact and a multi-model endpoint "
                f"does not load it (models: {join(sorted(available)) or 'none'})",
                line=line,
            )


def _callee(function: ast.expr) -> str:
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return ""


def _model_name_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "model_name":
            return keyword.value
    return call.args[0] if call.args else None


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments, the usual way a BLS target is named."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
    return found


def _constant_text(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None
