"""Model families: one ensemble, one entry per tenant, one artifact per tenant.

models/<family>/                     no model_version.txt: the family itself never ships
  requirements.txt, train.py, BUILD  shared by every tenant (one env per family)
  <family>_preprocessing/ ...        the ensemble's step folders, written once
  tests/fixtures/<case>.json         fixture inputs a new tenant starts from
  tenants/<tenant>/                  one folder per tenant:
    model_version.txt                the tenant's own version
    <family>_inferencer/1/model.onnx its weights (DVC-tracked: model.onnx.dvc in git)
    <family>_<step>/1/<file>         optional parameters (labels, thresholds, normalization)
    tests/fixtures/<case>.json       its fixtures

A tenant's files overlay the family's at the same relative path, inside a step's version folder
only: code and configs stay the family's, so one change to them selects every tenant. A tenant
builds as the model ``<family>-<tenant>`` (folder.tenant_model_name) from a folder assembled under
``build/tenants/`` (git-ignored): the family's step folders with the tenant's files over them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mmetools.core.errors import ConfigError, MmetoolsError, UsageError
from mmetools.core.settings import find_root
from mmetools.core.tree import walk
from mmetools.model.config import CONFIG_FILE
from mmetools.model.dvc import POINTER_SUFFIX, fetch_weights
from mmetools.model.folder import (
    ENV_ARCHIVE,
    MAX_MODEL_NAME_LENGTH,
    MODEL_NAME_PATTERN,
    TENANTS_DIR,
    TESTS_DIR,
    VERSION_FILE,
    ModelFolder,
    is_family_folder,
    tenant_model_name,
)

logger = logging.getLogger(__name__)

BUILD_DIR = Path("build") / TENANTS_DIR  # relative to the repository root; git-ignored
# Written into a step folder by the env step; kept when a tenant's folder is assembled again.
_PLACED_BY_ENV = frozenset({ENV_ARCHIVE, ".python_env.json"})
_NEVER_COPIED = frozenset({"__pycache__", ".gitignore"})
_CODE_SUFFIXES = (".py", ".pbtxt")


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot name a family or tenant (the rule of model names), or None."""
    if len(name) > MAX_MODEL_NAME_LENGTH:
        return f"{kind} name {name[:20]!r}... is longer than {MAX_MODEL_NAME_LENGTH} characters"
    if not MODEL_NAME_PATTERN.match(name):
        return (
            f"invalid {kind} name {name!r}: use lowercase letters, digits and '_', starting with a "
            "letter and not ending with '_' (it becomes part of the artifact name "
            "<family>-<tenant>_<version>.tar.gz)"
        )
    return None


@dataclass(frozen=True)
class Family:
    """``models/<family>/``: the shared ensemble and its tenants."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tenants_dir(self) -> Path:
        return self.path / TENANTS_DIR

    def tenant_dir(self, tenant: str) -> Path:
        return self.tenants_dir / tenant

    def tenants(self) -> list[str]:
        """The tenant folders' names, sorted (names are checked by :func:`tenant_problems`)."""
        return sorted(p.name for p in self.tenants_dir.iterdir() if p.is_dir())

    def step_names(self) -> list[str]:
        return sorted(p.parent.name for p in self.path.glob(f"*/{CONFIG_FILE}"))


def family(path: Path) -> Family:
    """``path`` as a family; UsageError when it is none."""
    if not is_family_folder(path):
        raise UsageError(
            f"{path}: not a model family (expected a {TENANTS_DIR}/ folder and no {VERSION_FILE}; "
            "`mmetools new NAME --family` writes one)"
        )
    return Family(path)


def _files(folder: Path, *, pointers: bool = True) -> list[Path]:
    """Regular files below ``folder``, relative to it, sorted (DVC pointers too: the assembled
    folder shows validation and the fetch step that its weights are tracked)."""
    found = [
        Path(entry.relative)
        for entry in walk(folder, enter=lambda entry: entry.name not in _NEVER_COPIED)
        if (entry.is_file or entry.path.is_file())  # DVC may link weights in
        and entry.name not in _NEVER_COPIED
        and (pointers or not entry.name.endswith(POINTER_SUFFIX))
    ]
    return sorted(found)


def tenant_problems(fam: Family, tenant: str) -> list[tuple[Path, str]]:
    """What keeps ``tenant`` of ``fam`` from building, each naming the file: its name, its
    version file, and files outside what a tenant may set."""
    where = fam.tenant_dir(tenant)
    problem = name_problem("tenant", tenant)
    if problem:
        return [(where, problem)]
    name = tenant_model_name(fam.name, tenant)
    if len(name) > MAX_MODEL_NAME_LENGTH * 2:
        return [(where, f"model name {name!r} is too long")]
    problems: list[tuple[Path, str]] = []
    if not (where / VERSION_FILE).is_file():
        problems.append((where / VERSION_FILE, "missing; it must hold the tenant's version"))
    steps = set(fam.step_names())
    for relative in _files(where, pointers=False):
        parts = relative.parts
        if parts[0] in (VERSION_FILE, TESTS_DIR, "README.md"):
            continue
        if parts[0] not in steps:
            problems.append(
                (
                    where / relative,
                    f"tenant '{tenant}' of family '{fam.name}' may only set "
                    f"files inside the family's steps ({', '.join(sorted(steps)) or 'none'}), "
                    f"{VERSION_FILE} and {TESTS_DIR}/",
                )
            )
        elif len(parts) < 3 or not parts[1].isdigit():
            problems.append(
                (
                    where / relative,
                    f"a tenant's file must be inside a version folder "
                    f"({parts[0]}/1/...): configs are the family's",
                )
            )
        elif relative.suffix in _CODE_SUFFIXES:
            problems.append(
                (
                    where / relative,
                    f"code and configs are the family's, shared by every tenant; "
                    "a tenant sets data files only (weights, labels, thresholds)",
                )
            )
    return problems


def _destination(fam: Family, tenant: str, root: Path) -> Path:
    return root / BUILD_DIR / tenant_model_name(fam.name, tenant)


def assemble_tenant(fam: Family, tenant: str, root: Path) -> ModelFolder:
    """The tenant's model folder under ``build/tenants/<family>-<tenant>``: the family's files
    with the tenant's over them. Files are copied (the packager refuses links), and only those
    whose size or mtime changed; the env step's packed envs are kept."""
    destination = _destination(fam, tenant, root)
    source = fam.tenant_dir(tenant)
    wanted: dict[Path, Path] = {}
    for relative in _files(fam.path):
        # The family's tests/ holds the inputs new tenants start from, not cases of this one.
        if (
            relative.parts[0] not in (TENANTS_DIR, TESTS_DIR)
            and relative.name not in _PLACED_BY_ENV
        ):
            wanted[relative] = fam.path / relative
    for relative in _files(source):
        wanted[relative] = source / relative
    try:
        _sync(wanted, destination)
    except OSError as e:
        raise UsageError(f"{destination}: cannot assemble tenant '{tenant}': {e}") from e
    return ModelFolder(destination, origin=source)


def source_of(fam: Family, tenant: str, assembled: ModelFolder, path: Path) -> Path:
    """The committed file behind ``path`` of a tenant's assembled folder: the tenant's when it
    sets it (or when neither has it: a tenant's missing file), else the family's."""
    try:
        relative = path.relative_to(assembled.path)
    except ValueError:
        return path
    own = fam.tenant_dir(tenant) / relative
    shared = fam.path / relative
    return shared if shared.exists() and not own.exists() else own


def _sync(wanted: dict[Path, Path], destination: Path) -> None:
    present = set(_files(destination)) if destination.is_dir() else set()
    for relative in sorted(present - set(wanted)):
        if relative.name not in _PLACED_BY_ENV:
            (destination / relative).unlink()
    for relative, source in wanted.items():
        target = destination / relative
        info = source.stat()
        try:
            current = target.stat()
            if (current.st_size, current.st_mtime_ns) == (info.st_size, info.st_mtime_ns):
                continue
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.copy")
        shutil.copy2(source, temporary)
        os.replace(temporary, target)


def tenant_folder(family_path: Path, tenant: str, *, fetch: bool = True) -> ModelFolder:
    """One tenant as a model folder: its files checked, its DVC-tracked weights fetched (they
    are the tenant's, pulled into its own folder), then assembled."""
    fam = family(family_path)
    if not fam.tenant_dir(tenant).is_dir():
        known = ", ".join(fam.tenants()) or "none yet: `mmetools tenant add`"
        raise UsageError(f"{fam.tenant_dir(tenant)}: family '{fam.name}' has no tenant "
                         f"'{tenant}' (tenants: {known})")  # fmt: skip
    problems = tenant_problems(fam, tenant)
    if problems:
        raise ConfigError("\n".join(f"{path}: {message}" for path, message in problems))
    root = find_root(fam.path)
    if fetch:  # named as the model it builds; its pointers are in its own folder
        fetch_weights(ModelFolder(_destination(fam, tenant, root), origin=fam.tenant_dir(tenant)))
    return assemble_tenant(fam, tenant, root)


def family_tenant_folders(family_path: Path) -> list[ModelFolder]:
    """Every tenant of the family as a model folder, in name order."""
    fam = family(family_path)
    tenants = fam.tenants()
    if not tenants:
        raise UsageError(
            f"{fam.path}: family '{fam.name}' has no tenants yet "
            f"(`mmetools tenant add {fam.path} TENANT`)"
        )
    root = find_root(fam.path)
    folders = []
    for tenant in tenants:
        try:
            folders.append(tenant_folder(fam.path, tenant))
        except MmetoolsError as e:
            # One broken tenant stops only itself: its validate or fetch step says why.
            logger.warning("%s: tenant '%s' is built as it is: %s", fam.path, tenant, e)
            folders.append(assemble_tenant(fam, tenant, root))
    return folders
