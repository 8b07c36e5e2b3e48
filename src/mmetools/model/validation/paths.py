"""The entry points: what a PATH is (model folder, Triton repository, folder of model folders) and
which rules apply to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mmetools.core.errors import UsageError
from mmetools.model.config import CONFIG_FILE, model_folders
from mmetools.model.folder import (
    TENANTS_DIR,
    VERSION_FILE,
    ModelFolder,
    is_family_folder,
    is_model_folder,
)
from mmetools.model.validation.bls import bls_problems
from mmetools.model.validation.ensemble import EnsembleChecker, ensemble_cycle_problems
from mmetools.model.validation.problems import Problem, by_file
from mmetools.model.validation.project_rules import project_problems
from mmetools.model.validation.repository import Repository, read_repository
from mmetools.model.validation.triton_rules import Rules, model_problems


def validate_paths(paths: Sequence[Path]) -> list[Problem]:
    """Validate every PATH (model folder, repository, or folder of model folders), in order.

    Raises UsageError before any work when a PATH cannot be validated at all. Files among
    folders are skipped (summary_line names them), so that ``mmetools validate models/*``
    works when models/ also holds a README or a Pants BUILD file.
    """
    folders = [path for path in paths if path.is_dir()]
    for path in paths:
        if not (path.is_file() and folders):
            _check_usable(path)
    return [problem for path in folders for problem in validate_path(path)]


def validate_path(path: Path) -> list[Problem]:
    """Validate a monorepo model folder, a Triton model repository or a folder of model folders."""
    _check_usable(path)
    if is_family_folder(path):
        from mmetools.model.family import family

        return [p for tenant in family(path).tenants() for p in validate_tenant(path, tenant)]
    if path.parent.name == TENANTS_DIR and is_family_folder(path.parent.parent):
        return validate_tenant(path.parent.parent, path.name)
    if is_model_folder(path):
        return validate_model_folder(path)
    if model_folders(path):
        return validate_repository(path)
    children = sorted(c for c in path.iterdir() if c.is_dir() and is_model_folder(c))
    return [problem for child in children for problem in validate_model_folder(child)]


def validate_repository(path: Path) -> list[Problem]:
    """Check a plain Triton model repository against the rules Triton applies when loading it."""
    repository = read_repository(path)
    return by_file(_triton_problems(repository, Rules(ensemble_needs_version=True)))


def validate_model_folder(folder: ModelFolder | Path) -> list[Problem]:
    """Check ``models/<name>/``: Triton's rules plus the project's layout and SageMaker's needs."""
    model_folder = folder if isinstance(folder, ModelFolder) else ModelFolder(folder)
    repository = read_repository(model_folder.path)
    # Packaging creates the ensemble's empty 1/ (git keeps no empty folders).
    problems = _triton_problems(repository, Rules(ensemble_needs_version=False))
    problems.extend(project_problems(model_folder, repository))
    return by_file(problems)


def validate_tenant(family_path: Path, tenant: str) -> list[Problem]:
    """A tenant's own rules (model/family.py), then those of its assembled model folder."""
    from mmetools.model.family import Family, assemble_tenant, source_of, tenant_problems
    from mmetools.core.settings import find_root

    fam = Family(family_path)
    own = [Problem(path, message) for path, message in tenant_problems(fam, tenant)]
    if own:
        return by_file(own)
    assembled = assemble_tenant(fam, tenant, find_root(family_path))
    # Said against the committed files, not the assembled copies, and naming the tenant.
    return by_file([
        replace(problem, path=source_of(fam, tenant, assembled, problem.path),
                message=f"{problem.message} (tenant '{tenant}')")
        for problem in validate_model_folder(assembled)
    ])  # fmt: skip


def _triton_problems(repository: Repository, rules: Rules) -> list[Problem]:
    """Everything Triton would reject when loading the repository, not just the first problem."""
    problems = list(repository.load_problems)
    checker = EnsembleChecker(repository)
    for name, model in repository.models.items():
        problems.extend(model_problems(model, rules))
        if repository.is_ensemble(name):
            problems.extend(checker.check(model))
    problems.extend(ensemble_cycle_problems(repository))
    problems.extend(bls_problems(repository))
    return problems


def _check_usable(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a folder; expected a model folder (with {VERSION_FILE}) "
            "or a Triton model repository"
        )
    if is_model_folder(path) or model_folders(path) or is_family_folder(path):
        return
    if any(c.is_dir() and is_model_folder(c) for c in path.iterdir()):
        return
    if (path / CONFIG_FILE).is_file():
        raise UsageError(
            f"{path}: this is a single Triton model; pass the repository that holds it "
            f"({path.parent}) or its model folder"
        )
    raise UsageError(
        f"{path}: neither a model folder (no {VERSION_FILE}) nor a Triton model repository "
        f"(no subfolder with a {CONFIG_FILE})"
    )
