"""``mmetools new``: a complete model folder from the templates in ``mmetools/model/templates/``.

``templates/common/`` holds what every framework shares, ``templates/<framework>/`` what differs
(the inferencer's config.pbtxt, and ``export.py.part``, the export function of train.py).
``{{name}}`` and the other tokens of :class:`Framework` are replaced in file names and contents;
a trailing ``.tmpl`` is dropped (it keeps the templates' .py files away from pytest, mypy and
the import system). The folder is built in a temp sibling and renamed into place, so a failure
leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from mmetools.model.dvc import find_dvc_root, local_remote_folder
from mmetools.core.errors import DvcError, ScaffoldError, ScaffoldUsageError
from mmetools.model.folder import (
    MAX_MODEL_NAME_LENGTH,
    MODEL_NAME_PATTERN,
    TENANTS_DIR,
    VERSION_FILE,
)

logger = logging.getLogger(__name__)

TEMPLATE_SUFFIX = ".tmpl"
EXPORT_PART = "export.py.part"


@dataclass(frozen=True)
class Framework:
    """What differs between inferencer formats; each field is a ``{{token}}`` of the templates."""

    framework: str
    platform: str
    weight_file: str
    inferencer_input: str
    inferencer_output: str
    runtime: str


FRAMEWORKS = {
    "onnx": Framework(
        "onnx", "onnxruntime_onnx", "model.onnx", "features", "logits", "onnxruntime"
    ),
    "torchscript": Framework(
        "torchscript", "pytorch_libtorch", "model.pt", "INPUT__0", "OUTPUT__0", "torch"
    ),
}


def check_name(name: str) -> None:
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise ScaffoldUsageError(
            f"invalid model name {name[:20]!r}... ({len(name)} characters): at most "
            f"{MAX_MODEL_NAME_LENGTH}; it becomes folder, Triton model and artifact names"
        )
    if not MODEL_NAME_PATTERN.match(name):
        raise ScaffoldUsageError(
            f"invalid model name {name!r}: use lowercase letters, digits and '_', starting with a "
            "letter and not ending with '_' (e.g. 'fraud_scorer'); it becomes the folder name, "
            "the Triton model names and the artifact name <name>_<version>.tar.gz"
        )


def scaffold_model(name: str, framework: str, models_dir: Path, *, family: bool = False) -> Path:
    """Create ``models_dir/name`` for ``framework`` ("onnx" or "torchscript"); returns the folder.
    ScaffoldUsageError (exit 2) if the name is invalid or the framework unknown, ScaffoldError
    if the folder exists or cannot be written. ``family``: a model family (model/family.py)
    with the same ensemble and no tenant yet."""
    check_name(name)
    if framework not in FRAMEWORKS:
        raise ScaffoldUsageError(
            f"unknown framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}"
        )
    target = models_dir / name
    if target.exists() or target.is_symlink():
        raise ScaffoldError(f"{target}: already exists; `mmetools new` never overwrites a folder")
    root = resources.files("mmetools.model").joinpath("templates")
    tokens = template_tokens(name, FRAMEWORKS[framework])
    tokens.update(commit_tokens(models_dir / name))
    tokens["export"] = root.joinpath(framework, EXPORT_PART).read_text(encoding="utf-8").rstrip()
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=models_dir))
    except OSError as e:
        reason = "it is a file, not a folder" if models_dir.is_file() else e.strerror or str(e)
        raise ScaffoldError(
            f"--models-dir {models_dir}: cannot create a model there: {reason}"
        ) from e
    try:
        _render_tree(root.joinpath("common"), staging, tokens)
        _render_tree(root.joinpath(framework), staging, tokens)
        if family:
            _make_family(staging, name)
        _fix_permissions(staging)
        # os.rename fails if the target appeared meanwhile, so a concurrent run cannot be clobbered
        try:
            os.rename(staging, target)
        except OSError as e:
            raise ScaffoldError(f"{target}: cannot create it: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.debug("created %s (%s)", target, framework)
    return target


FAMILY_BUILD = """\
# One target per tenant (models/{name}/tenants/<tenant>): a tenant's files select only it, the
# family's shared files select every tenant.
triton_model_family(name="{name}")

python_sources(name="python", sources=["**/*.py"])
"""

FAMILY_README = """\
# {name}: a model family

One Triton ensemble ({name}_pipeline and its steps), one artifact per tenant:
`{name}-<tenant>_<version>.tar.gz`, built from this folder's shared files with
`tenants/<tenant>/` over them (its weights, its parameters, its fixtures, its version).

    mmetools tenant add models/{name} TENANT        # train (train.py --seed), dvc add + push, fixtures
    mmetools tenant add models/{name} TENANT --weights PATH    # or take trained weights
    mmetools build models/{name}                    # every tenant; or models/{name}/tenants/TENANT

A tenant may set files inside a step's version folder only (e.g.
`tenants/<tenant>/{name}_postprocessing/1/labels.txt`); code and configs are shared. The default
`{name}_preprocessing/1/normalization.json` serves tenants that do not set their own, and
`tests/fixtures/` holds the inputs each new tenant's fixtures start from.
"""

TENANTS_README = """\
Each folder here is one tenant of the family: model_version.txt, its weights (DVC pointers) and
fixtures. `mmetools tenant add` writes them.
"""


def _make_family(folder: Path, name: str) -> None:
    """Turn a rendered model folder into a family: no version of its own, a tenants/ folder,
    the family's BUILD and README."""
    (folder / VERSION_FILE).unlink()
    (folder / "BUILD").write_text(FAMILY_BUILD.format(name=name), encoding="utf-8")
    (folder / "README.md").write_text(FAMILY_README.format(name=name), encoding="utf-8")
    (folder / TENANTS_DIR).mkdir()
    (folder / TENANTS_DIR / "README.md").write_text(TENANTS_README, encoding="utf-8")


def template_tokens(name: str, framework: Framework) -> dict[str, str]:
    return {
        "name": name,
        "framework": framework.framework,
        "platform": framework.platform,
        "weight_file": framework.weight_file,
        "inferencer_input": framework.inferencer_input,
        "inferencer_output": framework.inferencer_output,
        "runtime": framework.runtime,
        # Pants reads every file named BUILD or BUILD.*, so the template's name is a token.
        "build_file": "BUILD",
    }


def next_steps(target: Path, framework: str) -> list[str]:
    """The commands that take a new model folder to a commit CI can ship (its README explains
    each), to run from the repository root with the repository's venv activated."""
    folder = target.as_posix()
    weights = f"{folder}/{target.name}_inferencer/1/{FRAMEWORKS[framework].weight_file}"
    return [
        f"python {folder}/train.py",
        f"dvc add {weights}",
        "dvc push",
        f"mmetools fixtures regen {folder}",
        f"mmetools lock {folder}",
        f"./pants test {folder}:",
        commit_tokens(target)["git_add"],
    ]


def git_add_paths(target: Path) -> list[str]:
    """What to `git add` after `dvc push` for a new model folder, relative to the repository
    root: the folder, and the DVC remote when it is a folder of the repository (the examples'
    .dvc/example-remote/), since the objects `dvc push` wrote there reach CI only through git."""
    try:
        repository = find_dvc_root(target.parent)
        remote = local_remote_folder(repository)
    except DvcError:
        return [target.as_posix()]
    paths = [_relative_to(target, repository)]
    if remote is not None and remote.is_relative_to(repository):
        paths.append(_relative_to(remote, repository))
    return paths


def commit_tokens(target: Path) -> dict[str, str]:
    paths = git_add_paths(target)
    if len(paths) > 1:
        why = (
            f"`dvc push` wrote the weights' objects into `{paths[1]}/`, the repository's DVC "
            "remote: CI fetches them from there, so they belong in the same commit (the weights "
            "themselves stay git-ignored)."
        )
    else:
        why = "`dvc push` sent the weights to the DVC remote; git keeps only the `.dvc` pointer."
    return {"git_add": "git add " + " ".join(paths), "git_add_why": why}


def _relative_to(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def render(text: str, tokens: dict[str, str]) -> str:
    for key, value in tokens.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _render_tree(source: Traversable, destination: Path, tokens: dict[str, str]) -> None:
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name == EXPORT_PART or entry.name == "__pycache__":
            continue
        name = render(entry.name, tokens).removesuffix(TEMPLATE_SUFFIX)
        target = destination / name
        if entry.is_dir():
            target.mkdir(exist_ok=True)
            _render_tree(entry, target, tokens)
        else:
            target.write_text(render(entry.read_text(encoding="utf-8"), tokens), encoding="utf-8")


def _fix_permissions(folder: Path) -> None:
    # mkdtemp creates 0700; the model folder should have the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
