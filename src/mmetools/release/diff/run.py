"""Running both versions of a model on one Triton and comparing their answers.

The previous version's tarball is fetched from its destination and unpacked as SageMaker does;
the candidate is a tarball or a model folder (staged as the tarball's members). Both are loaded
into one SageMaker-frontend Triton (:mod:`mmetools.testing.loaded_models`) and get every input.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmetools.build.identity import folder_identity, tarball_identity
from mmetools.core.errors import ArtifactError, TritonError, UsageError
from mmetools.core.settings import Settings
from mmetools.model.cases import EnsembleSignature, load_fixtures
from mmetools.model.folder import ModelFolder, parse_artifact_name
from mmetools.release.diff.acceptance import check_acceptance
from mmetools.release.diff.compare import DiffReport, compare_output
from mmetools.release.diff.dataset import load_dataset
from mmetools.release.diff.thresholds import load_thresholds
from mmetools.release.published import PublishedVersion, fetch_published, find_previous
from mmetools.release.versions import Candidate, check_candidate
from mmetools.testing.artifact_test import (
    MmeClient,
    artifact_ensemble,
    emulated_target,
    packed_env_steps,
)
from mmetools.testing.loaded_models import load_folder, staged_model_folder, unpacked_artifact
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.testing.triton import SAGEMAKER, TritonServer, resolve_mode

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (what, done, total)


def output_changes(
    previous: EnsembleSignature, candidate: EnsembleSignature
) -> tuple[list[tuple[str, str]], tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(pairs of outputs to compare as (previous name, candidate name), added, removed, renamed).
    One output gone and one new of the same datatype and shape is a rename, compared as one."""
    added = [name for name in candidate.outputs if name not in previous.outputs]
    removed = [name for name in previous.outputs if name not in candidate.outputs]
    renamed: list[tuple[str, str]] = []
    if len(added) == 1 and len(removed) == 1:
        if previous.outputs[removed[0]] == candidate.outputs[added[0]]:
            renamed, added, removed = [(removed[0], added[0])], [], []
    pairs = [(name, name) for name in candidate.outputs if name in previous.outputs] + renamed
    return pairs, tuple(added), tuple(removed), tuple(renamed)


def _unpacked_previous(
    server: TritonServer, artifact: Path, previous: PublishedVersion, steps: tuple[str, ...]
) -> tuple[Path, EnsembleSignature]:
    """The previous version unpacked, and its ensemble's signature; errors name its URI (the
    fetched copy is a temp file nobody can look at)."""
    try:
        folder = unpacked_artifact(server, artifact, steps)
        return folder, artifact_ensemble(folder, artifact)
    except (ArtifactError, tarfile.TarError, EOFError, OSError) as e:
        message = str(e).replace(str(artifact), previous.uri)
        if previous.uri not in message:
            message = f"{previous.uri}: {message}"
        raise ArtifactError(f"the published previous version cannot be unpacked: {message}") from e


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
    candidate_source = str(candidate or model.path)
    target_candidate = candidate.name if candidate is not None else model.ref().artifact_name
    target_previous = previous.artifact_name
    if target_previous == target_candidate:
        target_previous = f"previous-{target_previous}"
    # Packed envs are built for the serving target: serve them as test --artifact does.
    try:
        previous_steps = packed_env_steps(previous_artifact, settings)
    except (ArtifactError, tarfile.TarError, EOFError, OSError) as e:
        message = str(e).replace(str(previous_artifact), previous.uri)
        raise ArtifactError(f"the published previous version cannot be read: {message}") from e
    candidate_steps = packed_env_steps(candidate, settings) if candidate is not None else ()
    env = ensure_serving_env(model.requirements_file, settings.cache_dir)
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
    with server:
        client = MmeClient(server)
        previous_folder, previous_signature = _unpacked_previous(
            server, previous_artifact, previous, tuple(previous_steps)
        )
        pairs, added, removed, renamed = output_changes(previous_signature, signature)
        results: dict[str, list[tuple[str, Any, Any]]] = {new: [] for _, new in pairs}
        loaded_previous = load_folder(server, previous_folder, target_previous)
        folder = (
            unpacked_artifact(server, candidate, candidate_steps)
            if candidate is not None
            else staged_model_folder(server, model)
        )
        loaded_candidate = load_folder(server, folder, target_candidate)
        asked = (
            (loaded_previous, list(previous_signature.outputs)),
            (loaded_candidate, list(signature.outputs)),
        )
        for done, case in enumerate(cases):
            if progress is not None:
                progress("inputs", done, len(cases))
            answers: list[dict[str, Any] | str] = []
            for loaded, names in asked:
                try:
                    answers.append(client.invoke(loaded.model_id, loaded.target_model, case, names))
                except TritonError as e:
                    answers.append(str(e))
            before, after = answers
            if isinstance(before, str) or isinstance(after, str):
                if isinstance(before, str) and isinstance(after, str):
                    logger.info("input %s fails on both versions", case.name)
                    continue
                side = "candidate" if isinstance(after, str) else "previous version"
                failure = before if isinstance(before, str) else after
                errors.append(f"input '{case.name}' fails on the {side} only: {failure}")
                continue
            for old, new in pairs:
                results[new].append((case.name, before[old], after[new]))
        if progress is not None:
            progress("inputs", len(cases), len(cases))
        for loaded in (loaded_previous, loaded_candidate):
            client.unload(loaded.model_id, loaded.target_model)
    diffs = tuple(
        compare_output(new, signature.outputs[new].datatype, results[new], thresholds.of(new))
        for _, new in pairs
    )
    return DiffReport(
        model.name,
        candidate_source,
        previous,
        len(cases),
        diffs,
        tuple(errors),
        thresholds.source,
        added=added,
        removed=removed,
        renamed=renamed,
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
    folder itself when None) against the version it replaces: with ``against="auto"``,
    production's highest version (the version must be above it: VersionError otherwise, see
    :mod:`mmetools.release.versions`), else the branch's staging's highest below it. No previous
    version, or production already holding these very bytes, is a skipped report
    (``report.skipped``), not an error. A recorded acceptance (:mod:`.acceptance`) is checked
    against the result."""
    if candidate is not None:
        ref = parse_artifact_name(candidate)
        if ref.name != model.name:
            raise UsageError(f"{candidate}: an artifact of '{ref.name}', not of '{model.name}'")
        version = ref.version
        identity = tarball_identity(candidate)
    else:
        version = model.version()
        identity = folder_identity(model)
    base = DiffReport(
        model.name,
        str(candidate or model.path),
        None,
        model_dir=str(model.path),
        candidate_version=version,
        candidate_identity=identity,
    )
    if against in ("auto", "production"):
        checked = Candidate(
            model.name,
            version,
            str(model.version_file),
            sha256=_sha256(candidate) if candidate is not None else None,
            identity=identity,
        )
        state = check_candidate(checked, settings, session)
        if state.same is not None:
            return replace(
                base,
                note=f"production already holds {state.same.uri} with these bytes: a "
                "re-release, nothing to compare or publish anew",
            )
    previous = find_previous(
        model.name, version, settings, against=against, branch=branch, session=session
    )
    if previous is None:
        return replace(
            base,
            note=f"no published version of {model.name} below {version} ({against}): "
            "the first version has nothing to be compared with",
        )
    with tempfile.TemporaryDirectory(prefix="mmetools-diff-") as scratch:
        try:
            fetched = fetch_published(previous, Path(scratch), session=session)
        except OSError as e:
            raise ArtifactError(f"{previous.uri}: cannot fetch: {e}") from e
        compared = compare_versions(
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
        report = replace(
            compared,
            model_dir=base.model_dir,
            candidate_version=version,
            candidate_identity=identity,
            previous_sha256=_sha256(fetched),
        )
    return replace(report, acceptance=check_acceptance(model, report))
