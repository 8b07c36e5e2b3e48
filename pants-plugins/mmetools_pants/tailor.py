"""`./pants tailor ::` writes the BUILD of a model folder that has none: a `triton_model` named
after the folder and the `python_sources` of its Python files (linted by black).

`mmetools new` writes the same BUILD itself, so after it tailor has nothing to add. These are the
only targets tailor proposes in this repository: Pants' own Python tailoring is off (pants.toml,
`[python] tailor_*`), since it named a second python_sources after the folder (the model's target
became `<name>0`) and added python_requirements for each requirements.txt."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pants.backend.python.target_types import PythonSourcesGeneratorTarget
from pants.core.goals.tailor import (
    AllOwnedSources,
    PutativeTarget,
    PutativeTargets,
    PutativeTargetsRequest,
)
from pants.engine.fs import PathGlobs, Paths
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from mmetools_pants.target_types import TritonModelTarget

MODELS_DIR = "models"
VERSION_FILE = "model_version.txt"


@dataclass(frozen=True)
class PutativeTritonModelTargetsRequest(PutativeTargetsRequest):
    pass


def model_dirs(version_files: tuple[str, ...]) -> list[str]:
    """models/<name>/ folders, found by their model_version.txt."""
    dirs = (os.path.dirname(f) for f in version_files if os.path.basename(f) == VERSION_FILE)
    return sorted(d for d in dirs if os.path.dirname(d) == MODELS_DIR)


@rule(level=LogLevel.DEBUG, desc="Determine candidate triton_model targets to create")
async def find_putative_triton_models(
    request: PutativeTritonModelTargetsRequest, all_owned_sources: AllOwnedSources
) -> PutativeTargets:
    version_files = await Get(Paths, PathGlobs, request.path_globs(VERSION_FILE))
    owned = set(all_owned_sources)
    new_dirs = [d for d in model_dirs(version_files.files) if f"{d}/{VERSION_FILE}" not in owned]
    python_files = await MultiGet(Get(Paths, PathGlobs([f"{d}/**/*.py"])) for d in new_dirs)
    targets = []
    for model_dir, python in zip(new_dirs, python_files):
        name = os.path.basename(model_dir)
        targets.append(
            PutativeTarget.for_target_type(
                TritonModelTarget, path=model_dir, name=name, triggering_sources=[VERSION_FILE]
            )
        )
        unowned = sorted(os.path.relpath(f, model_dir) for f in python.files if f not in owned)
        if unowned:
            targets.append(
                PutativeTarget.for_target_type(
                    PythonSourcesGeneratorTarget,
                    path=model_dir,
                    name="python",
                    triggering_sources=unowned,
                    kwargs={"sources": ("**/*.py",)},
                )
            )
    return PutativeTargets(targets)


def rules() -> tuple[object, ...]:
    return (
        *collect_rules(),
        UnionRule(PutativeTargetsRequest, PutativeTritonModelTargetsRequest),
    )
