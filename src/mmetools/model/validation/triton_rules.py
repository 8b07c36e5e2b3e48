"""What Triton core checks in each model's config.pbtxt on its own: name, platform and backend,
batching, the fields an ensemble must not set, tensor declarations and version folders.

The rules mirror triton-inference-server/core ``model_config_utils.cc`` (ValidateModelConfig,
ValidateIOShape, ValidateEnsembleSchedulingConfig), ``model_repository_manager.cc`` (folder name
= model name) and ``model_lifecycle.cc`` (VersionsToLoad).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2

from mmetools.model.config import (
    ENSEMBLE_PLATFORM,
    KNOWN_BACKENDS,
    PLATFORM_BACKENDS,
    ModelConfig,
    RepositoryModel,
    is_ensemble,
)
from mmetools.model.validation.problems import WARNING, Problem, join
from mmetools.model.validation.repository import served_versions
from mmetools.model.validation.tensors import WILDCARD_DIM

# Platforms Triton accepts besides those in model_config.PLATFORM_BACKENDS (constants.h).
_EXTRA_PLATFORM_BACKENDS = {"libtorch": "pytorch", "torch_aoti": "pytorch"}
# Backends whose platform Triton cross-checks (GetBackendType in model_config_utils.cc).
_PLATFORM_CHECKED_BACKENDS = frozenset({"tensorflow", "tensorrt", "onnxruntime", "pytorch"})


@dataclass(frozen=True)
class Rules:
    # A plain repository is served as it is; a model folder gets the ensemble's 1/ at packaging.
    ensemble_needs_version: bool


def model_problems(model: RepositoryModel, rules: Rules) -> Iterator[Problem]:
    """Everything Triton rejects (or guesses) in one model's config, ensemble steps aside."""
    config = model.config
    path = model.config_path

    def error(message: str) -> Problem:
        return Problem(path, message)

    # model_repository_manager.cc: "directory name must equal model name" (an empty name is
    # filled in from the folder).
    if config.name and config.name != model.name:
        yield error(
            f"name '{config.name}' differs from the folder name '{model.name}'; "
            "Triton requires the config name to equal its folder name"
        )

    platform, backend = str(config.platform), str(config.backend)
    has_scheduling = bool(config.HasField("ensemble_scheduling"))
    if platform == ENSEMBLE_PLATFORM:
        if backend:
            yield error(
                f'an ensemble must not set backend (found backend: "{backend}"); '
                'Triton requires platform: "ensemble" and no backend'
            )
        if not has_scheduling:
            yield error('platform is "ensemble" but ensemble_scheduling is missing')
        yield from _ensemble_field_problems(model)
    else:
        if has_scheduling:
            shown = f"'{platform}'" if platform else "not set"
            yield error(f'ensemble_scheduling is set but platform is {shown}, not "ensemble"')
        yield from _backend_problems(model)

    if config.max_batch_size < 0:
        yield error(f"max_batch_size must be >= 0, got {config.max_batch_size}")
    yield from (error(m) for m in _io_messages(config))
    yield from _version_problems(model, rules)


def _platform_backend(platform: str) -> str:
    return PLATFORM_BACKENDS.get(platform) or _EXTRA_PLATFORM_BACKENDS.get(platform, "")


def _backend_problems(model: RepositoryModel) -> Iterator[Problem]:
    path = model.config_path
    platform, backend = str(model.config.platform), str(model.config.backend)
    if not platform and not backend:
        yield Problem(
            path,
            "sets neither platform nor backend; Triton then guesses the backend from the files "
            "in the first version folder: set it explicitly",
            WARNING,
        )
        return
    expected = _platform_backend(platform)
    if platform and not backend and not expected:
        known = ", ".join(sorted([*PLATFORM_BACKENDS, *_EXTRA_PLATFORM_BACKENDS, "ensemble"]))
        yield Problem(
            path, f"unknown platform '{platform}' and no backend (known platforms: {known})"
        )
        return
    if backend in _PLATFORM_CHECKED_BACKENDS and platform and expected != backend:
        yield Problem(
            path,
            f"platform '{platform}' and backend '{backend}' do not match"
            + (f" (platform '{platform}' runs on backend '{expected}')" if expected else ""),
        )
    effective = backend or expected
    if effective and effective not in KNOWN_BACKENDS:
        yield Problem(
            path,
            f"unknown backend '{effective}'; the serving Triton must provide it",
            WARNING,
        )


def _ensemble_field_problems(model: RepositoryModel) -> Iterator[Problem]:
    """ValidateEnsembleSchedulingConfig: fields that make no sense on an ensemble."""
    config, path = model.config, model.config_path
    if len(config.instance_group) > 0:
        yield Problem(path, "instance_group must not be set for an ensemble")
    if config.HasField("optimization"):
        yield Problem(path, "optimization must not be set for an ensemble")
    if len(config.model_warmup) > 0:
        yield Problem(path, "model_warmup must not be set for an ensemble")


# --- tensor declarations ----------------------------------------------------------------------


def _dims_text(dims: Iterable[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _bad_dims_message(where: str, field: str, dims: Sequence[int]) -> str | None:
    if any(d < 1 and d != WILDCARD_DIM for d in dims):
        return (
            f"{where} has {field} {_dims_text(dims)}; each dimension must be >= 1, "
            "or -1 for a variable size"
        )
    return None


def _element_count(dims: Sequence[int]) -> int:
    """GetElementCount: -1 when any dimension is variable, 0 for no dimensions."""
    if not dims:
        return 0
    total = 1
    for dim in dims:
        if dim == WILDCARD_DIM:
            return WILDCARD_DIM
        total *= dim
    return total


def _fixed_chunks(dims: Sequence[int]) -> list[int]:
    """Element counts of the runs of fixed dimensions between variable ones."""
    chunks, current = [], 1
    for dim in dims:
        if dim == WILDCARD_DIM:
            chunks.append(current)
            current = 1
        else:
            current *= dim
    chunks.append(current)
    return chunks


def _io_messages(config: ModelConfig) -> Iterator[str]:
    """ValidateIOShape for every input and output, plus names declared twice."""
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for index, io in enumerate(tensors, start=1):
            if not io.name:
                yield f"{kind} {index} has no name"
                continue
            where = f"{kind} '{io.name}'"
            if io.name in seen:
                yield f"{where} is declared twice"
            seen.add(io.name)
            if io.data_type == model_config_pb2.TYPE_INVALID:
                yield f"{where} has no data_type"
            dims = [int(d) for d in io.dims]
            if not dims:
                yield f"{where} has no dims"
            bad_dims = _bad_dims_message(where, "dims", dims)
            if bad_dims:
                yield bad_dims
            if io.HasField("reshape"):
                yield from _reshape_messages(
                    where, dims, [int(d) for d in io.reshape.shape], config
                )


def _reshape_messages(
    where: str, dims: list[int], shape: list[int], config: ModelConfig
) -> Iterator[str]:
    if not shape and config.max_batch_size == 0:
        yield (
            f"{where} has an empty reshape in a model that does not batch (max_batch_size 0); "
            "Triton does not support scalar tensors"
        )
    bad_shape = _bad_dims_message(where, "reshape", shape)
    if bad_shape:
        yield bad_shape
        return
    dims_count, shape_count = _element_count(dims), _element_count(shape)
    different = f"{where} has dims {_dims_text(dims)} and reshape {_dims_text(shape)}"
    if dims_count != shape_count and (shape_count != 0 or dims_count != 1):
        yield f"{different} with different element counts"
    elif dims_count == WILDCARD_DIM:
        dims_chunks, shape_chunks = _fixed_chunks(dims), _fixed_chunks(shape)
        if len(dims_chunks) != len(shape_chunks):
            yield f"{different} with different numbers of variable-size dimensions"
        elif dims_chunks != shape_chunks:
            yield f"{different} with different element counts"


# --- versions ---------------------------------------------------------------------------------


def _version_problems(model: RepositoryModel, rules: Rules) -> Iterator[Problem]:
    path = model.config_path
    if not model.versions:
        if is_ensemble(model.config) and not rules.ensemble_needs_version:
            return
        yield Problem(
            path,
            f"no version folder (such as {model.name}/1/); Triton finds no version to load",
        )
        return
    policy = model.config.version_policy
    if policy.WhichOneof("policy_choice") == "specific":
        for version in sorted({int(v) for v in policy.specific.versions}):
            if version not in model.versions:
                yield Problem(
                    path,
                    f"version_policy lists version {version}, but there is no folder "
                    f"{model.name}/{version}/",
                    WARNING,
                )
    if not served_versions(model):
        yield Problem(
            path,
            f"version_policy selects none of the version folders "
            f"({join(str(v) for v in model.versions)}); Triton finds no version to load",
        )
