"""Running both versions of a model on one Triton and comparing their answers.

The previous version's tarball is fetched from its destination and unpacked as SageMaker does;
the candidate is a tarball or a model folder (staged as the tarball's members). Both are loaded
into one SageMaker-frontend Triton (:mod:`mmetools.testing.loaded_models`) and get every input.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmetools.core.errors import ArtifactError, TritonError, UsageError
from mmetools.core.settings import Settings
from mmetools.model.cases import EnsembleSignature, load_fixtures
from mmetools.model.folder import ModelFolder, parse_artifact_name
from mmetools.release.diff.compare import DiffReport, compare_output
from mmetools.release.diff.dataset import load_dataset
from mmetools.release.diff.thresholds import load_thresholds
from mmetools.release.published import PublishedVersion, fetch_published, find_previous
from mmetools.testing.artifact_test import MmeClient, emulated_target, packed_env_steps
from mmetools.testing.loaded_models import load_folder, staged_model_folder, unpacked_artifact
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.testing.triton import SAGEMAKER, TritonServer, resolve_mode

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (what, done, total)


def compare_versions(
    model: ModelFolder,
    candidate: Path | None,
    previous_artifact: Path,
    previous: PublishedVersion,
    settings: Settings,
    *,
    dataset: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    progress: Progress | None = None,
) -> DiffReport:
    """Run both versions over every input on one SageMaker-frontend Triton and compare."""
    thresholds = load_thresholds(model)
    signature = EnsembleSignature.from_config(model.ensemble().config)
    cases = [replace(c, expected=()) for c in load_fixtures(model)]
    if dataset is not None:
        cases += load_dataset(dataset, signature, model.name)
    outputs = list(signature.outputs)
    env = ensure_serving_env(model.requirements_file, settings.cache_dir)
    candidate_source = str(candidate or model.path)
    target_candidate = candidate.name if candidate is not None else model.ref().artifact_name
    target_previous = previous.artifact_name
    if target_previous == target_candidate:
        target_previous = f"previous-{target_previous}"
    # Packed envs are built for the serving target: serve them as test --artifact does.
    previous_steps = packed_env_steps(previous_artifact, settings)
    candidate_steps = packed_env_steps(candidate, settings) if candidate is not None else ()
    chosen = resolve_mode(settings.triton.mode, mode, image)
    server = TritonServer(
        target_python=emulated_target(settings, chosen, bool(previous_steps or candidate_steps)),
        mode=chosen,
        frontend=SAGEMAKER,
        python_env=env,
        cache_dir=settings.cache_dir,
        image=image or settings.triton.image,
        requirements=model.requirements_file if model.requirements_file.is_file() else None,
    )
    errors: list[str] = []
    results: dict[str, list[tuple[str, Any, Any]]] = {name: [] for name in outputs}
    with server:
        client = MmeClient(server)
        loaded_previous = load_folder(
            server, unpacked_artifact(server, previous_artifact, previous_steps), target_previous
        )
        folder = (
            unpacked_artifact(server, candidate, candidate_steps)
            if candidate is not None
            else staged_model_folder(server, model)
        )
        loaded_candidate = load_folder(server, folder, target_candidate)
        for done, case in enumerate(cases):
            if progress is not None:
                progress("inputs", done, len(cases))
            answers: list[dict[str, Any] | str] = []
            for loaded in (loaded_previous, loaded_candidate):
                try:
                    answers.append(
                        client.invoke(loaded.model_id, loaded.target_model, case, outputs)
                    )
                except TritonError as e:
                    answers.append(str(e))
            before, after = answers
            if isinstance(before, str) or isinstance(after, str):
                if isinstance(before, str) and isinstance(after, str):
                    logger.info("input %s fails on both versions", case.name)
                    continue
                side = "candidate" if isinstance(after, str) else "previous version"
                errors.append(
                    f"input '{case.name}' fails on the {side} only: {before if isinstance(before, str) else after}"
                )
                continue
            for name in outputs:
                results[name].append((case.name, before[name], after[name]))
        if progress is not None:
            progress("inputs", len(cases), len(cases))
        for loaded in (loaded_previous, loaded_candidate):
            client.unload(loaded.model_id, loaded.target_model)
    diffs = tuple(
        compare_output(name, signature.outputs[name].datatype, results[name], thresholds.of(name))
        for name in outputs
    )
    return DiffReport(
        model.name,
        candidate_source,
        previous,
        len(cases),
        diffs,
        tuple(errors),
        thresholds.source,
    )


def diff_against_published(
    model: ModelFolder,
    candidate: Path | None,
    settings: Settings,
    *,
    against: str = "auto",
    branch: str | None = None,
    dataset: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    session: boto3.session.Session | None = None,
    progress: Progress | None = None,
) -> DiffReport:
    """What the pipeline calls before publishing: diff ``candidate`` (a tarball, or the model
    folder itself when None) against the highest published version below it. No previous
    version is a skipped report (``report.skipped``), not an error."""
    if candidate is not None:
        ref = parse_artifact_name(candidate)
        if ref.name != model.name:
            raise UsageError(f"{candidate}: an artifact of '{ref.name}', not of '{model.name}'")
        version = ref.version
    else:
        version = model.version()
    previous = find_previous(
        model.name, version, settings, against=against, branch=branch, session=session
    )
    if previous is None:
        return DiffReport(
            model.name,
            str(candidate or model.path),
            None,
            note=f"no published version of {model.name} below {version} ({against}): "
            "the first version has nothing to be compared with",
        )
    with tempfile.TemporaryDirectory(prefix="mmetools-diff-") as scratch:
        try:
            fetched = fetch_published(previous, Path(scratch), session=session)
        except OSError as e:
            raise ArtifactError(f"{previous.uri}: cannot fetch: {e}") from e
        return compare_versions(
            model,
            candidate,
            fetched,
            previous,
            settings,
            dataset=dataset,
            mode=mode,
            image=image,
            progress=progress,
        )
