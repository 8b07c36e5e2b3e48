"""Static validation of Triton model repositories and of the monorepo's model folders.

Two layers of rules, both checked without starting a server:

* What Triton itself rejects when it loads a repository holding ensembles: triton_rules (each
  model's config on its own), ensemble (each step's model, version and maps; ensembles that
  contain themselves) and ensemble_flow (the data flow between the steps). Triton stops at the
  first problem of a model; this package reports all of them.
* What this project requires of ``models/<name>/`` (see model_folder.py) and what SageMaker's
  multi-model frontend needs of an artifact (docs/mme-contract.md): project_rules.

repository reads a folder once for all rules; paths holds the entry points; problems the
reported values. Steps are numbered from 1, in the order the ensemble config lists them. Every
problem names the file and the offending step, tensor or field. ``validate_model`` is the
pipeline's validate step: warnings logged, every error raised at once.
"""

from __future__ import annotations

import logging

from mmetools.core.errors import ValidationFailed
from mmetools.model.folder import ModelFolder

from mmetools.model.validation.paths import (
    validate_model_folder,
    validate_path,
    validate_tenant,
    validate_paths,
    validate_repository,
)
from mmetools.model.validation.problems import (
    ERROR,
    WARNING,
    Problem,
    Severity,
    count,
    display_path,
    summary_line,
)

logger = logging.getLogger(__name__)


def validate_model(model: ModelFolder) -> None:
    """Static validation of the model folder; ValidationFailed with every error (warnings are
    logged)."""
    problems = (
        validate_path(model.path)
        if model.origin is None
        else validate_tenant(model.source_dir, model.origin.name)
    )
    errors = [problem for problem in problems if problem.is_error]
    for problem in problems:
        if not problem.is_error:
            logger.warning("%s", problem)
    if errors:
        raise ValidationFailed([str(problem) for problem in errors])


__all__ = [
    "ERROR",
    "WARNING",
    "Problem",
    "Severity",
    "count",
    "display_path",
    "summary_line",
    "validate_model",
    "validate_model_folder",
    "validate_path",
    "validate_tenant",
    "validate_paths",
    "validate_repository",
]
