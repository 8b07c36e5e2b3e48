"""What this project requires of ``models/<name>/`` beyond Triton's rules (see model_folder.py),
and what SageMaker's multi-model frontend needs of an artifact (docs/mme-contract.md): a valid
model_version.txt, exactly one ensemble named ``<name>_pipeline``, no model that is no step,
names in every config, EXECUTION_ENV_PATH inside the step folder, model.py for Python steps,
weights or their DVC pointers for the others, and requirements.txt when there are Python steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from mmetools.core.errors import ConfigError
from mmetools.model.config import (
    CONFIG_FILE,
    PYTHON_BACKEND,
    RepositoryModel,
    backend_of,
    is_ensemble,
)
from mmetools.model.folder import (
    EXECUTION_ENV_KEY,
    MODEL_DIRECTORY_TOKEN,
    ModelFolder,
    execution_env_problem,
    model_env_value,
    read_model_version,
    weight_filename,
    weight_paths,
)
from mmetools.model.validation.problems import WARNING, Problem, join
from mmetools.model.validation.repository import Repository

PIPELINE_SUFFIX = "_pipeline"

# SageMaker's frontend picks the ensemble of an artifact by this regex over the raw config text
# (triton server src/sagemaker_server.h, platform_ensemble_regex_).
_SAGEMAKER_ENSEMBLE_TEXT = re.compile(r'platform:(\s)*"ensemble"')


def project_problems(folder: ModelFolder, repository: Repository) -> Iterator[Problem]:
    """The project's rules for one model folder whose repository has been read already."""
    try:
        read_model_version(folder.version_file)
    except ConfigError as e:
        yield Problem(folder.version_file, _without_prefix(str(e), folder.version_file))

    yield from _ensemble_problems(folder, repository)
    for name in sorted(repository.auto_completed):
        # Triton would complete it, but the packager ships only folders with a config.pbtxt.
        yield Problem(
            folder.path / name,
            f"no {CONFIG_FILE}: model '{folder.name}' packages only step folders that have one, "
            f"so {name} would be missing from the artifact; write {name}/{CONFIG_FILE}",
        )

    python_steps = []
    for name, model in repository.models.items():
        yield from _sagemaker_text_problems(repository, model)
        if not model.config.name:
            yield Problem(model.config_path, f'no name; set name: "{name}"')
        yield from _execution_env_problems(model)
        if backend_of(model.config) == PYTHON_BACKEND:
            python_steps.append(name)
            yield from _python_file_problems(model)
            # With a lock, the env step decides against the serving target: no env at all when
            # the image provides every locked requirement (then no config may set one).
            if not is_ensemble(model.config) and not any(folder.path.glob("requirements-*.lock")):
                yield from _missing_execution_env(model)
        yield from _weight_problems(model)
    if python_steps and not folder.requirements_file.is_file():
        yield Problem(
            folder.requirements_file,
            f"missing; the Python steps ({join(python_steps)}) need it to build their "
            "environment (it may be empty)",
        )


def _without_prefix(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _ensemble_problems(folder: ModelFolder, repository: Repository) -> Iterator[Problem]:
    """Exactly one ensemble, named <name>_pipeline, and every other model one of its steps."""
    ensembles = [name for name, model in repository.models.items() if is_ensemble(model.config)]
    expected_name = f"{folder.steps_name}{PIPELINE_SUFFIX}"
    if not ensembles and not repository.broken:
        found = join(sorted(repository.models)) or "no model folders"
        yield Problem(
            folder.path,
            f'no ensemble (a model folder with platform: "ensemble") among {found}; '
            f"model '{folder.name}' needs exactly one, named {expected_name}",
        )
    elif len(ensembles) > 1:
        yield Problem(
            folder.path,
            f"{len(ensembles)} ensembles ({join(sorted(ensembles))}); model '{folder.name}' "
            "needs exactly one: SageMaker serves a single ensemble per artifact",
        )
    for name in ensembles:
        if name != expected_name:
            yield Problem(
                repository.models[name].config_path,
                f"ensemble folder '{name}' should be named '{expected_name}'",
                WARNING,
            )
    if len(ensembles) == 1:
        yield from _unused_model_problems(repository, ensembles[0])


def _unused_model_problems(repository: Repository, ensemble: str) -> Iterator[Problem]:
    used = {ensemble}
    pending = [ensemble]
    while pending:
        for step in repository.steps.get(pending.pop(), ()):
            if step.model_name not in used:
                used.add(step.model_name)
                pending.append(step.model_name)
    for name, model in repository.models.items():
        if name not in used:
            yield Problem(
                model.config_path,
                f"not a step of {ensemble}; it would ship in the artifact and load for nothing",
                WARNING,
            )


def _sagemaker_text_problems(repository: Repository, model: RepositoryModel) -> Iterator[Problem]:
    matches = bool(_SAGEMAKER_ENSEMBLE_TEXT.search(repository.texts[model.name]))
    if is_ensemble(model.config) and not matches:
        yield Problem(
            model.config_path,
            'platform must be written exactly as platform: "ensemble" (double quotes, no space '
            "before the colon); SageMaker's multi-model frontend finds the ensemble by that text",
        )
    elif matches and not is_ensemble(model.config):
        yield Problem(
            model.config_path,
            'contains the text platform: "ensemble" (in a comment?) but is not an ensemble; '
            "SageMaker's multi-model frontend may serve this folder as the ensemble",
        )


def _execution_env_problems(model: RepositoryModel) -> Iterator[Problem]:
    if EXECUTION_ENV_KEY not in model.config.parameters:
        return
    value = str(model.config.parameters[EXECUTION_ENV_KEY].string_value)
    problem = execution_env_problem(value, model.path.parent.name)
    if problem:
        yield Problem(model.config_path, f"parameter {EXECUTION_ENV_KEY} '{value}' {problem}")


def _missing_execution_env(model: RepositoryModel) -> Iterator[Problem]:
    """The env step ships ``<step>/python_env.tar.gz``; mmetools never edits a config to point at
    it (packaging and tests change no tracked file), so the committed config must say so."""
    if EXECUTION_ENV_KEY in model.config.parameters:
        return
    # A warning, not an error: `package --no-env` (the image's Python serves the step) is valid
    # without it; the env step itself refuses to build for a config that lacks it.
    yield Problem(
        model.config_path,
        f"Python step {model.name} sets no {EXECUTION_ENV_KEY}; the env step packs the model's "
        f"env, which Triton only uses when the config says so, and refuses to run without it. "
        f'Add these lines: parameters: {{ key: "{EXECUTION_ENV_KEY}" '
        f'value: {{ string_value: "{model_env_value(model.path.parent.name)}" }} }}',
        WARNING,
    )


def _python_file_problems(model: RepositoryModel) -> Iterator[Problem]:
    filename = str(model.config.default_model_filename) or "model.py"
    for version in model.versions:
        if not (model.path / str(version) / filename).is_file():
            yield Problem(
                model.path / str(version),
                f"no {filename}; the Python backend runs {model.name}/{version}/{filename}",
            )


def _weight_problems(model: RepositoryModel) -> Iterator[Problem]:
    filename = weight_filename(model)
    for weight in weight_paths(model):
        if not weight.exists() and not weight.with_name(f"{filename}.dvc").is_file():
            version = weight.parent.name
            yield Problem(
                weight.parent,
                f"neither {filename} nor its DVC pointer {filename}.dvc; {model.name} loads "
                f"{version}/{filename} (run `dvc pull`, or `dvc add` the weight file)",
            )
