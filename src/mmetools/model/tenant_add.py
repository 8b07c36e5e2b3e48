"""``mmetools tenant add FAMILY TENANT``: a tenant left complete, so that committing is the only
step left: version 1, weights trained by the family's train.py with the tenant's own seed (or
taken from ``--weights``), tracked and pushed with DVC, fixtures computed by the reference runner
from the family's fixture inputs. A failure removes the tenant's folder: nothing half written.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmetools.core.errors import ScaffoldError, ScaffoldUsageError
from mmetools.core.process import run
from mmetools.core.settings import find_root
from mmetools.core.tree import remove_tree
from mmetools.model.dvc import POINTER_SUFFIX, dvc_executable, find_dvc_root
from mmetools.model.family import Family, assemble_tenant, family, name_problem
from mmetools.model.folder import FIXTURES_DIR, VERSION_FILE, ModelFolder, weight_filename
from mmetools.model.reference.regenerate import regenerate_fixtures

logger = logging.getLogger(__name__)

TRAIN_SCRIPT = "train.py"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class AddedTenant:
    folder: Path
    weights: Path  # the weight file, tracked by DVC
    seed: int | None  # None: the weights were given
    fixtures: int


def tenant_seed(tenant: str) -> int:
    """The tenant's training seed: a function of its name only, so a retrain is reproducible."""
    return int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:4], "big")


def weights_path_in(fam: Family) -> Path:
    """The inferencer's weight file, relative to a tenant's folder (e.g. f_inferencer/1/model.onnx)."""
    found = []
    for step in ModelFolder(fam.path).repository().values():
        filename = weight_filename(step)
        if filename is not None:
            found.append(Path(step.name) / "1" / filename)
    if len(found) != 1:
        raise ScaffoldError(
            f"{fam.path}: family '{fam.name}' needs exactly one inferencer step with a weight "
            f"file for `tenant add`, found {len(found)}"
        )
    return found[0]


def add_tenant(
    family_path: Path,
    tenant: str,
    *,
    weights: Path | None = None,
    seed: int | None = None,
    push: bool = True,
    progress: Progress | None = None,
) -> AddedTenant:
    """Write ``tenants/<tenant>/`` complete (see the module's docstring)."""

    def report(message: str) -> None:
        logger.info("%s/%s: %s", family_path.name, tenant, message)
        if progress is not None:
            progress(message)

    problem = name_problem("tenant", tenant)
    if problem:
        raise ScaffoldUsageError(problem)
    fam = family(family_path)
    if weights is not None and not weights.is_file():
        raise ScaffoldUsageError(f"--weights {weights}: no such file")
    target = fam.tenant_dir(tenant)
    if target.exists() or target.is_symlink():
        raise ScaffoldError(f"{target}: already exists; `tenant add` never overwrites a tenant")
    relative_weights = weights_path_in(fam)
    used_seed = None if weights is not None else (seed if seed is not None else tenant_seed(tenant))
    repository = find_dvc_root(fam.path)
    try:
        target.mkdir()
        (target / VERSION_FILE).write_text("1\n", encoding="utf-8")
        weight_file = target / relative_weights
        if weights is not None:
            report(f"taking the weights from {weights}")
            weight_file.parent.mkdir(parents=True)
            shutil.copyfile(weights, weight_file)
        else:
            report(f"training with {TRAIN_SCRIPT} --seed {used_seed}")
            run([sys.executable, str(fam.path / TRAIN_SCRIPT), "--seed", str(used_seed),
                 "--out", str(target)], cwd=repository, context=f"{fam.name}/{tenant}: train")  # fmt: skip
            if not weight_file.is_file():
                raise ScaffoldError(f"{fam.path / TRAIN_SCRIPT} wrote no {weight_file}")
        inputs = sorted((fam.path / FIXTURES_DIR).glob("*.json"))
        if not inputs:
            raise ScaffoldError(
                f"{fam.path / FIXTURES_DIR}: no fixture inputs (*.json) for the new tenant"
            )
        (target / FIXTURES_DIR).mkdir(parents=True)
        for path in inputs:
            shutil.copyfile(path, target / FIXTURES_DIR / path.name)
        pointer = _relative(weight_file, repository) + POINTER_SUFFIX
        report("dvc add" + (" + push" if push else ""))
        dvc = dvc_executable()
        extra_env = {"DVC_NO_ANALYTICS": "1"}
        context = f"{fam.name}/{tenant}: dvc"
        run([dvc, "add", _relative(weight_file, repository)], cwd=repository,
            extra_env=extra_env, context=context)  # fmt: skip
        if push:
            run([dvc, "push", pointer], cwd=repository, extra_env=extra_env, context=context)
        report("computing the fixtures' expected outputs")
        folder = assemble_tenant(fam, tenant, find_root(fam.path))
        cases = regenerate_fixtures(folder)
    except BaseException:
        remove_tree(target, ignore_errors=True)
        raise
    return AddedTenant(target, weight_file, used_seed, len(cases))


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()
