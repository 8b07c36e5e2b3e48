"""The project's layout of one model: ``models/<name>/`` holding a Triton ensemble and its files.

models/<name>/
  model_version.txt            positive integer; the artifact is <name>_<version>.tar.gz
  requirements.txt             pip requirements of the Python steps
  <name>_preprocessing/        Python backend step: config.pbtxt, 1/model.py
  <name>_inferencer/           onnxruntime_onnx (1/model.onnx) or pytorch_libtorch (1/model.pt),
                               the weight file tracked by DVC (1/model.onnx.dvc in git)
  <name>_postprocessing/       optional Python backend step
  <name>_pipeline/             platform: "ensemble", wiring the steps
  tests/fixtures/<case>.json   fixture cases: inputs and expected outputs with tolerances

A model family (model/family.py) holds the ensemble once and one entry per tenant under
``tenants/<tenant>/``; each tenant is a model named ``<family>-<tenant>`` whose Triton steps keep
the family's names (``<family>_pipeline``...): every tarball is its own namespace on an MME.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mmetools.core.errors import ConfigError, UsageError
from mmetools.model.config import (
    CONFIG_FILE,
    DEFAULT_MODEL_FILENAMES,
    PYTHON_BACKEND,
    RepositoryModel,
    backend_of,
    is_ensemble,
    load_repository,
)

VERSION_FILE = "model_version.txt"
MAX_VERSION_DIGITS = 18  # fits an int64, as Triton's model versions must
REQUIREMENTS_FILE = "requirements.txt"
TESTS_DIR = "tests"
FIXTURES_DIR = "tests/fixtures"
ENV_ARCHIVE = "python_env.tar.gz"
EXECUTION_ENV_KEY = "EXECUTION_ENV_PATH"
MODEL_DIRECTORY_TOKEN = "$$TRITON_MODEL_DIRECTORY"
EXECUTION_ENV_VALUE = f"{MODEL_DIRECTORY_TOKEN}/{ENV_ARCHIVE}"
# One env per model, beside its step folders (the artifact's root), referenced by every Python
# step: Triton's python backend extracts each distinct archive once per server
# (python_backend src/pb_env.cc, keyed by the canonical path), so it is extracted once.
MODEL_ENV_SUFFIX = "_env.tar.gz"


def model_env_archive(model_name: str) -> str:
    """The model's one env at the artifact's root: ``<model>_env.tar.gz``; a tenant's is its
    family's (``<family>_env.tar.gz``): the configs that name it are the family's, shared."""
    return f"{split_model_name(model_name)[0]}{MODEL_ENV_SUFFIX}"


def model_env_value(model_name: str) -> str:
    """EXECUTION_ENV_PATH of every Python step sharing the model's env."""
    return f"{MODEL_DIRECTORY_TOKEN}/../{model_env_archive(model_name)}"


MODEL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$")
# A tenant of family F is the model "F-T": '-' is in no model or tenant name, so the split is unique.
TENANT_SEPARATOR = "-"
TENANTS_DIR = "tenants"
MODELS_DIR = "models"
# Step folders are <name>_postprocessing and temp names add a prefix and suffix: 64 keeps every
# derived file name far below the 255-byte limit of file systems.
MAX_MODEL_NAME_LENGTH = 64
ARTIFACT_SUFFIX = ".tar.gz"  # the artifact's name; its sidecars' names: build/files.py
ARTIFACT_NAME_PATTERN = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*(?:-[a-z][a-z0-9_]*)?)_(?P<version>[1-9][0-9]*)"
    + re.escape(ARTIFACT_SUFFIX)
    + "$"
)
_VERSION_TEXT = re.compile(r"^[1-9][0-9]*$")


@dataclass(frozen=True)
class ModelRef:
    """A model of the monorepo and the version it would ship as."""

    name: str
    version: int

    @property
    def artifact_name(self) -> str:
        return artifact_file_name(self.name, self.version)


def artifact_file_name(name: str, version: int | str) -> str:
    """``<name>_<version>.tar.gz``: the one rule for an artifact's name (``version`` as written
    in model_version.txt, or parsed); its sidecars are named by build/files.py."""
    return f"{name}_{version}{ARTIFACT_SUFFIX}"


def tenant_model_name(family: str, tenant: str) -> str:
    """``<family>-<tenant>``: the one rule for a tenant's model name (its artifact is
    ``<family>-<tenant>_<version>.tar.gz``; S3 keys and TargetModel names follow from it)."""
    return f"{family}{TENANT_SEPARATOR}{tenant}"


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"fam-acme"`` -> ("fam", "acme"); a plain model name -> (name, None)."""
    family, separator, tenant = name.partition(TENANT_SEPARATOR)
    return (family, tenant) if separator else (name, None)


def own_folder(name: str, root: Path) -> Path:
    """The folder holding a model's own version and fixtures: ``models/<name>`` or, for a
    tenant, ``models/<family>/tenants/<tenant>``."""
    family, tenant = split_model_name(name)
    if tenant is None:
        return root / MODELS_DIR / name
    return root / MODELS_DIR / family / TENANTS_DIR / tenant


def requirements_of(name: str, root: Path) -> Path:
    """The requirements.txt a model's (or a tenant's family's) Python steps are built from."""
    return root / MODELS_DIR / split_model_name(name)[0] / REQUIREMENTS_FILE


def parse_artifact_name(path: Path) -> ModelRef:
    """``dist/screen_detector_3.tar.gz`` -> ModelRef("screen_detector", 3); the version is the
    number after the last underscore. UsageError for any other name."""
    match = ARTIFACT_NAME_PATTERN.match(path.name)
    if match is None:
        raise UsageError(
            f"{path}: not an artifact name: expected <name>_<version>.tar.gz with a lowercase "
            "name (letters, digits, _) and a positive integer version, e.g. screen_detector_3.tar.gz"
        )
    return ModelRef(match["name"], int(match["version"]))


def read_model_version(path: Path) -> int:
    """Read model_version.txt: one positive integer (surrounding whitespace allowed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: missing; it must hold the model's version, e.g. 1") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text") from e
    value = text.strip()
    if len(value) > MAX_VERSION_DIGITS:
        raise ConfigError(
            f"{path}: version must be a positive integer such as 1 or 12, got "
            f"{len(value)} characters (max {MAX_VERSION_DIGITS} digits)"
        )
    if not _VERSION_TEXT.match(value):
        shown = repr(value) if value else "empty"
        raise ConfigError(
            f"{path}: version must be a positive integer such as 1 or 12, got {shown}"
        )
    return int(value)


def is_model_folder(path: Path) -> bool:
    """A monorepo model folder has a model_version.txt; a plain Triton repository does not."""
    return (path / VERSION_FILE).is_file()


def is_family_folder(path: Path) -> bool:
    """A model family has a tenants/ folder, step folders and no model_version.txt of its own."""
    return (
        (path / TENANTS_DIR).is_dir()
        and not is_model_folder(path)
        and any(path.glob(f"*/{CONFIG_FILE}"))
    )


@dataclass(frozen=True)
class ModelFolder:
    """``models/<name>/`` of the monorepo. Its Triton models are the subfolders with a config.

    A tenant's folder is assembled from its family (model/family.py): ``path`` is that build
    folder, ``origin`` the tenant's own ``models/<family>/tenants/<tenant>`` where its version
    and fixtures are read and written."""

    path: Path
    origin: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def steps_name(self) -> str:
        """The prefix of the Triton step names: the model's name, a tenant's family's name."""
        return split_model_name(self.name)[0]

    @property
    def own_dir(self) -> Path:
        return self.origin if self.origin is not None else self.path

    @property
    def source_dir(self) -> Path:
        """The committed folder this model is built from (a tenant's: its family's)."""
        return self.origin.parent.parent if self.origin is not None else self.path

    @property
    def version_file(self) -> Path:
        return self.own_dir / VERSION_FILE

    @property
    def requirements_file(self) -> Path:
        return self.path / REQUIREMENTS_FILE

    @property
    def fixtures_dir(self) -> Path:
        return self.own_dir / FIXTURES_DIR

    def version(self) -> int:
        return read_model_version(self.version_file)

    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version())

    def repository(self) -> dict[str, RepositoryModel]:
        """The Triton models of this folder; raises ConfigError when a config does not parse."""
        models, errors = load_repository(self.path)
        if errors:
            raise ConfigError("\n".join(errors))
        return models

    def ensemble(self) -> RepositoryModel:
        ensembles = [m for m in self.repository().values() if is_ensemble(m.config)]
        if len(ensembles) != 1:
            found = ", ".join(m.name for m in ensembles) or "none"
            raise ConfigError(
                f"{self.path}: model '{self.name}' needs exactly one ensemble "
                f'(platform: "ensemble"), found {found}'
            )
        return ensembles[0]

    def python_steps(self) -> list[RepositoryModel]:
        return [m for m in self.repository().values() if backend_of(m.config) == PYTHON_BACKEND]


def env_placement(value: str, model_name: str) -> str | None:
    """Where EXECUTION_ENV_PATH ``value`` wants the env: "model" (the model's one env at the
    artifact's root), "step" (a copy in the step folder: one extraction per step), or None."""
    if value == model_env_value(model_name):
        return "model"
    return "step" if execution_env_problem(value) is None else None


def execution_env_problem(value: str, model_name: str | None = None) -> str | None:
    """The one rule for a Python step's EXECUTION_ENV_PATH (validate, env and package all apply
    it): why ``value`` cannot name the packed env, or None when it does. With ``model_name``,
    the model's one env (``model_env_value``) is accepted too (the recommended form)."""
    if model_name is not None and value == model_env_value(model_name):
        return None
    prefix = f"{MODEL_DIRECTORY_TOKEN}/"
    if not value.startswith(prefix):
        reason = (
            "an absolute path does not travel with the artifact"
            if value.startswith("/")
            else "Triton does not resolve a relative path against the step folder"
        )
        return f"must start with {prefix} ({reason}), e.g. {EXECUTION_ENV_VALUE}"
    rest = value[len(prefix) :]
    shared = f" or {model_env_value(model_name)}" if model_name else ""
    if ".." in PurePosixPath(rest).parts:
        return (
            f"leaves the step folder through '..'; mmetools places the env at "
            f"{EXECUTION_ENV_VALUE}{shared}"
        )
    if posixpath.normpath(rest.strip("/") or ".") != ENV_ARCHIVE:
        return f"must name the packed env: mmetools places it at {EXECUTION_ENV_VALUE}{shared}"
    return None


def weight_filename(model: RepositoryModel) -> str | None:
    """The weight file a non-Python, non-ensemble step loads, or None for Python/ensembles."""
    backend = backend_of(model.config)
    if is_ensemble(model.config) or backend == PYTHON_BACKEND:
        return None
    return model.config.default_model_filename or DEFAULT_MODEL_FILENAMES.get(backend)


def weight_paths(model: RepositoryModel) -> list[Path]:
    """Every version's weight file path (present or not) for an inferencer step."""
    filename = weight_filename(model)
    if filename is None:
        return []
    return [model.path / str(version) / filename for version in model.versions]


def model_folder(path: Path) -> ModelFolder:
    """``path`` as a monorepo model folder (a tenant's ``models/<family>/tenants/<tenant>`` is
    assembled from its family); UsageError when it is not one, or is a whole family."""
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    if is_family_folder(path.parent.parent) and path.parent.name == TENANTS_DIR:
        from mmetools.model.family import tenant_folder  # family.py builds on this module

        return tenant_folder(path.parent.parent, path.name)
    if is_family_folder(path):
        raise UsageError(
            f"{path}: a model family: give one tenant ({path / TENANTS_DIR}/<tenant>), or the "
            "family to a command that takes several models"
        )
    if not is_model_folder(path):
        raise UsageError(
            f"{path}: not a model folder (expected {VERSION_FILE} and the model's step folders)"
        )
    if not any(path.glob(f"*/{CONFIG_FILE}")):
        raise UsageError(f"{path}: no Triton model folders (subfolders with {CONFIG_FILE})")
    return ModelFolder(path)


def missing_step_output_message(
    step: RepositoryModel, output: str, tensor: str, returned: Sequence[str] | None = None
) -> str:
    """A step did not return an output its config declares (the ensemble needed it as
    ``tensor``): said against that step, with what it returned when known."""
    what = "Python step" if backend_of(step.config) == PYTHON_BACKEND else "step"
    got = "" if returned is None else f" (it returned: {', '.join(returned) or 'nothing'})"
    hint = (
        ": the names model.py gives pb_utils.Tensor must be the output names of its config.pbtxt"
        if what == "Python step"
        else ""
    )
    return (
        f"{step.config_path}: {what} '{step.name}' did not return output '{output}' that its "
        f"config declares and the ensemble reads as '{tensor}'{got}{hint}"
    )


def producer_of(model: ModelFolder, tensor: str) -> tuple[RepositoryModel, str] | None:
    """The ensemble step that writes ensemble tensor ``tensor``, and its output name."""
    repository = model.repository()
    for step in model.ensemble().config.ensemble_scheduling.step:
        for output, written in step.output_map.items():
            if written == tensor and step.model_name in repository:
                return repository[step.model_name], output
    return None


def consumer_tensor(model: ModelFolder, step_name: str, step_input: str) -> str | None:
    """The ensemble tensor that feeds input ``step_input`` of step ``step_name``."""
    for step in model.ensemble().config.ensemble_scheduling.step:
        if step.model_name == step_name and step_input in step.input_map:
            return str(step.input_map[step_input])
    return None


def resolve_model_args(paths: Sequence[Path]) -> tuple[list[ModelFolder], list[Path]]:
    """The one ``models/*`` argument resolver of every command: the model folders among
    ``paths``, and the plain files skipped (a glob like models/* also matches models/BUILD).
    Anything else that is no model folder is a UsageError naming it."""
    folders: list[ModelFolder] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_file():
            skipped.append(path)
            continue
        if is_family_folder(path):  # a family stands for all of its tenants
            from mmetools.model.family import family_tenant_folders

            folders.extend(family_tenant_folders(path))
            continue
        folders.append(model_folder(path))
    return folders, skipped
