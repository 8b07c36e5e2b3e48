"""Static validation of Triton model repositories and of the monorepo's model folders.

Two layers of rules, both checked without starting a server:

* What Triton itself rejects when it loads a repository holding ensembles. The rules mirror
  triton-inference-server/core: ``model_config_utils.cc`` (ValidateModelConfig, ValidateIOShape,
  ValidateEnsembleSchedulingConfig, BuildEnsembleGraph), ``ensemble_scheduler/ensemble_utils.cc``
  (ValidateEnsembleConfig, ValidateTensorMapping, ValidateTensorConsistency),
  ``model_repository_manager.cc`` (folder name = model name, missing step models, required
  versions, circular dependencies between ensembles) and ``model_lifecycle.cc`` (VersionsToLoad).
  Triton stops at the first problem of a model; this module reports all of them.
* What this project requires of ``models/<name>/`` (see model_folder.py) and what SageMaker's
  multi-model frontend needs of an artifact (mme-contract.md).

Steps are numbered from 1, in the order the ensemble config lists them. Every problem names the
file and the offending step, tensor or field.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tritonclient.grpc import model_config_pb2

from mmetools.errors import ConfigError, UsageError
from mmetools.model_config import (
    CONFIG_FILE,
    ENSEMBLE_PLATFORM,
    KNOWN_BACKENDS,
    PLATFORM_BACKENDS,
    PYTHON_BACKEND,
    ModelConfig,
    RepositoryModel,
    backend_of,
    dtype_name,
    is_ensemble,
    model_folders,
    parse_config,
)
from mmetools.model_folder import (
    EXECUTION_ENV_KEY,
    VERSION_FILE,
    ModelFolder,
    is_model_folder,
    read_model_version,
    weight_filename,
)

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"

MODEL_DIRECTORY_TOKEN = "$$TRITON_MODEL_DIRECTORY"
PIPELINE_SUFFIX = "_pipeline"
WILDCARD_DIM = -1

# Platforms Triton accepts besides those in model_config.PLATFORM_BACKENDS (constants.h).
_EXTRA_PLATFORM_BACKENDS = {"libtorch": "pytorch", "torch_aoti": "pytorch"}
# Backends whose platform Triton cross-checks (GetBackendType in model_config_utils.cc).
_PLATFORM_CHECKED_BACKENDS = frozenset({"tensorflow", "tensorrt", "onnxruntime", "pytorch"})
# Folders inside a model folder that Triton never takes for versions (model_lifecycle.cc).
_NON_VERSION_DIRS = frozenset({"warmup", "initial_state", "configs"})
# SageMaker's frontend picks the ensemble of an artifact by this regex over the raw config text
# (triton server src/sagemaker_server.h, platform_ensemble_regex_).
_SAGEMAKER_ENSEMBLE_TEXT = re.compile(r'platform:(\s)*"ensemble"')
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Problem:
    """One finding: the file (or folder) it is about, what is wrong, and how bad it is."""

    path: Path
    message: str
    severity: Severity = ERROR
    line: int | None = None
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def location(self) -> str:
        where = display_path(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.location}: {prefix}{self.message}"


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it, else as given."""
    if path.is_absolute():
        cwd = Path.cwd()
        for base in (cwd, cwd.resolve()):
            try:
                return str(path.relative_to(base))
            except ValueError:
                continue
    return str(path)


# --------------------------------------------------------------------------------------------
# Public entry points


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
    if is_model_folder(path):
        return validate_model_folder(path)
    if model_folders(path):
        return validate_repository(path)
    children = sorted(c for c in path.iterdir() if c.is_dir() and is_model_folder(c))
    return [problem for child in children for problem in validate_model_folder(child)]


def validate_repository(path: Path) -> list[Problem]:
    """Check a plain Triton model repository against the rules Triton applies when loading it."""
    repository = _load_repository(path)
    return _sorted(_triton_problems(repository, _Rules(ensemble_needs_version=True)))


def validate_model_folder(folder: ModelFolder | Path) -> list[Problem]:
    """Check ``models/<name>/``: Triton's rules plus the project's layout and SageMaker's needs."""
    model_folder = folder if isinstance(folder, ModelFolder) else ModelFolder(folder)
    repository = _load_repository(model_folder.path)
    # Packaging creates the ensemble's empty 1/ (git keeps no empty folders).
    problems = _triton_problems(repository, _Rules(ensemble_needs_version=False))
    problems.extend(_project_problems(model_folder, repository))
    return _sorted(problems)


def count(problems: Iterable[Problem]) -> tuple[int, int]:
    """(errors, warnings) among ``problems``."""
    listed = list(problems)
    errors = sum(1 for p in listed if p.is_error)
    return errors, len(listed) - errors


def summary_line(problems: Sequence[Problem], paths: Sequence[Path]) -> str:
    """One line for the end of a report, e.g. ``invalid: 2 errors, 1 warning in 3 paths``."""
    errors, warnings = count(problems)
    verdict = "invalid" if errors else "valid"
    skipped = [display_path(p) for p in paths if p.is_file()]
    checked = len(paths) - len(skipped)
    line = (
        f"{verdict}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')} "
        f"in {_plural(checked, 'path')}"
    )
    if skipped:
        line += f" (skipped {_plural(len(skipped), 'file')}: {_join(skipped)})"
    return line


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class _Step:
    """One step of an ensemble, with its maps as written (repeated keys kept, in order)."""

    number: int
    model_name: str
    model_version: int
    input_entries: tuple[tuple[str, str], ...]  # (model input, ensemble tensor)
    output_entries: tuple[tuple[str, str], ...]  # (model output, ensemble tensor)

    @property
    def label(self) -> str:
        if self.model_name:
            return f"step {self.number} ({self.model_name})"
        return f"step {self.number}"

    @property
    def input_map(self) -> dict[str, str]:
        # What Triton sees: protobuf keeps the last value of a repeated map key.
        return dict(self.input_entries)

    @property
    def output_map(self) -> dict[str, str]:
        return dict(self.output_entries)


@dataclass(frozen=True)
class _Repository:
    root: Path
    models: dict[str, RepositoryModel]
    texts: dict[str, str]
    steps: dict[str, tuple[_Step, ...]]  # per ensemble (a model with ensemble_scheduling)
    broken: frozenset[str]  # folders whose config.pbtxt could not be read or parsed
    load_problems: tuple[Problem, ...]

    def is_ensemble(self, name: str) -> bool:
        return name in self.steps


@dataclass(frozen=True)
class _Rules:
    ensemble_needs_version: bool


def _check_usable(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a folder; expected a model folder (with {VERSION_FILE}) "
            "or a Triton model repository"
        )
    if is_model_folder(path) or model_folders(path):
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


def _load_repository(root: Path) -> _Repository:
    models: dict[str, RepositoryModel] = {}
    texts: dict[str, str] = {}
    steps: dict[str, tuple[_Step, ...]] = {}
    broken: set[str] = set()
    problems: list[Problem] = []
    for folder in model_folders(root):
        config_path = folder / CONFIG_FILE
        try:
            text = config_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(config_path, f"not UTF-8 text ({e.reason} at byte {e.start})"))
            broken.add(folder.name)
            continue
        try:
            config = parse_config(text, config_path)
        except ConfigError as e:
            problems.append(_syntax_problem(config_path, e))
            broken.add(folder.name)
            continue
        versions, ignored = _version_dirs(folder)
        for name in ignored:
            problems.append(
                Problem(
                    folder / name,
                    f"version folder '{name}' has a leading zero; Triton ignores it",
                    WARNING,
                )
            )
        models[folder.name] = RepositoryModel(folder.name, folder, config, versions)
        texts[folder.name] = text
        if config.HasField("ensemble_scheduling") or config.platform == ENSEMBLE_PLATFORM:
            steps[folder.name] = _read_steps(text, config)
    return _Repository(root, models, texts, steps, frozenset(broken), tuple(problems))


def _syntax_problem(config_path: Path, error: ConfigError) -> Problem:
    cause = error.__cause__
    line = column = None
    if isinstance(cause, text_format.ParseError):
        line, column = cause.GetLine(), cause.GetColumn()
    message = str(error)
    start = message.find("invalid config.pbtxt")
    message = message[start:] if start >= 0 else message
    if 'oneof "scheduling_choice"' in message:
        message += (
            " (a model sets at most one of dynamic_batching, sequence_batching and "
            "ensemble_scheduling; an ensemble schedules its steps itself)"
        )
    return Problem(config_path, message, ERROR, line, column)


def _version_dirs(folder: Path) -> tuple[tuple[int, ...], list[str]]:
    """Version folders as Triton sees them, and the numeric ones it ignores (leading zeros)."""
    versions: list[int] = []
    ignored: list[str] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.name in _NON_VERSION_DIRS or not _DIGITS.match(child.name):
            continue
        if len(child.name) > 1 and child.name.startswith("0"):
            ignored.append(child.name)
        else:
            versions.append(int(child.name))
    return tuple(sorted(versions)), ignored


@functools.cache
def _config_class_keeping_map_entries() -> Any:
    """A ModelConfig class whose step maps are plain repeated entries.

    Protobuf silently keeps only the last value of a repeated map key (Triton issue #4560), so
    the real ModelConfig cannot tell that an output was mapped twice. Parsing the same text with
    the maps' ``map_entry`` option turned off keeps every entry, in order.
    """
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(
        model_config_pb2.DESCRIPTOR.serialized_pb
    )
    for message in file_proto.message_type:
        if message.name != "ModelEnsembling":
            continue
        for step in message.nested_type:
            if step.name == "Step":
                for entry in step.nested_type:
                    entry.options.map_entry = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def _read_steps(text: str, config: ModelConfig) -> tuple[_Step, ...]:
    raw_steps: Any
    try:
        shadow = _config_class_keeping_map_entries()()
        text_format.Parse(text, shadow)
        raw_steps = shadow.ensemble_scheduling.step
        return tuple(
            _Step(
                number,
                str(step.model_name),
                int(step.model_version),
                tuple((str(e.key), str(e.value)) for e in step.input_map),
                tuple((str(e.key), str(e.value)) for e in step.output_map),
            )
            for number, step in enumerate(raw_steps, start=1)
        )
    except text_format.ParseError:  # cannot happen when the real parse passed; stay safe
        logger.debug("re-parse of step maps failed; duplicate map keys go unnoticed")
    raw_steps = config.ensemble_scheduling.step
    return tuple(
        _Step(
            number,
            str(step.model_name),
            int(step.model_version),
            tuple(sorted((str(k), str(v)) for k, v in step.input_map.items())),
            tuple(sorted((str(k), str(v)) for k, v in step.output_map.items())),
        )
        for number, step in enumerate(raw_steps, start=1)
    )


def _served_versions(model: RepositoryModel) -> tuple[int, ...]:
    """The versions Triton loads under the model's version_policy (default: latest 1)."""
    policy = model.config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        wanted = {int(v) for v in policy.specific.versions}
        return tuple(v for v in model.versions if v in wanted)
    if kind == "all":
        return model.versions
    latest = int(policy.latest.num_versions) if kind == "latest" else 1
    return model.versions[-latest:] if latest > 0 else ()


# --------------------------------------------------------------------------------------------
# Triton's rules


def _triton_problems(repository: _Repository, rules: _Rules) -> list[Problem]:
    problems = list(repository.load_problems)
    checker = _EnsembleChecker(repository)
    for name, model in repository.models.items():
        problems.extend(_model_problems(model, rules))
        if repository.is_ensemble(name):
            problems.extend(checker.check(model))
    problems.extend(_ensemble_cycle_problems(repository))
    return problems


def _model_problems(model: RepositoryModel, rules: _Rules) -> Iterator[Problem]:
    config = model.config
    path = model.config_path

    def error(message: str) -> Problem:
        return Problem(path, message)

    def warning(message: str) -> Problem:
        return Problem(path, message, WARNING)

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


def _dims_text(dims: Iterable[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


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
            if any(d < 1 and d != WILDCARD_DIM for d in dims):
                yield (
                    f"{where} has dims {_dims_text(dims)}; each dimension must be >= 1, "
                    "or -1 for a variable size"
                )
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
    if any(d < 1 and d != WILDCARD_DIM for d in shape):
        yield (
            f"{where} has reshape {_dims_text(shape)}; each dimension must be >= 1, "
            "or -1 for a variable size"
        )
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


def _version_problems(model: RepositoryModel, rules: _Rules) -> Iterator[Problem]:
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
    if not _served_versions(model):
        yield Problem(
            path,
            f"version_policy selects none of the version folders "
            f"({_join(str(v) for v in model.versions)}); Triton finds no version to load",
        )


# --------------------------------------------------------------------------------------------
# Ensembles: steps, tensor mapping, data flow


@dataclass(frozen=True)
class _Tensor:
    """The data type and shape one side of a mapping declares for an ensemble tensor."""

    data_type: int
    dims: tuple[int, ...]
    batching: bool
    origin: str  # "ensemble input 'X'", "output 'Y' of step 1 (pre)", ...

    def shape(self, with_batch: bool) -> str:
        parts = (["batch"] if with_batch and self.batching else []) + [str(d) for d in self.dims]
        return "[" + ",".join(parts) + "]"


def _dims_compatible(left: Sequence[int], right: Sequence[int]) -> bool:
    """CompareDimsWithWildcard (triton common): equal rank, equal dims unless either is -1."""
    return len(left) == len(right) and all(
        a == b or a == WILDCARD_DIM or b == WILDCARD_DIM for a, b in zip(left, right)
    )


def _shape_mismatch(producer: _Tensor, consumer: _Tensor) -> bool:
    # Between a batching and a non-batching model, Triton passes the full shape (batch
    # dimension included), so that is what must agree. Triton's load check also accepts equal
    # dims without the batch dimension there, which then fails on the first request.
    if producer.batching == consumer.batching:
        return not _dims_compatible(producer.dims, consumer.dims)
    full_producer = ((WILDCARD_DIM,) if producer.batching else ()) + producer.dims
    full_consumer = ((WILDCARD_DIM,) if consumer.batching else ()) + consumer.dims
    return not _dims_compatible(full_producer, full_consumer)


def _io_dims(io: Any, use_reshape: bool) -> tuple[int, ...]:
    # Ensemble inputs/outputs count with their reshape, step tensors with their dims
    # (ValidateEnsembleConfig / ValidateTensorMapping).
    if use_reshape and io.HasField("reshape"):
        return tuple(int(d) for d in io.reshape.shape)
    return tuple(int(d) for d in io.dims)


@dataclass(frozen=True)
class _Producer:
    step: _Step | None  # None: an ensemble input
    output: str  # the step model's output name, or the ensemble input name


@dataclass
class _EnsembleChecker:
    """Checks ensembles of one repository; remembers which (nested) ensembles are decoupled."""

    repository: _Repository
    _decoupled: dict[str, bool] = field(default_factory=dict)
    _in_progress: set[str] = field(default_factory=set)

    def check(self, ensemble: RepositoryModel) -> list[Problem]:
        problems = list(self._step_problems(ensemble))
        if self.repository.steps[ensemble.name]:
            problems.extend(self._flow(ensemble).problems)
        return problems

    # --- per step ---------------------------------------------------------------------------

    def _step_model(self, step: _Step) -> RepositoryModel | None:
        return self.repository.models.get(step.model_name)

    def _step_problems(self, ensemble: RepositoryModel) -> Iterator[Problem]:
        path = ensemble.config_path
        steps = self.repository.steps[ensemble.name]
        if ensemble.config.HasField("ensemble_scheduling") and not steps:
            yield Problem(path, "ensemble_scheduling has no step; an ensemble needs at least one")
        for step in steps:
            if not step.model_name:
                yield Problem(path, f"{step.label} has no model_name")
                continue
            if not step.input_entries:
                yield Problem(path, f"{step.label} has no input_map")
            if not step.output_entries:
                yield Problem(path, f"{step.label} has no output_map")
            yield from (Problem(path, m) for m in _repeated_key_messages(step))
            yield from self._step_model_problems(ensemble, step)

    def _step_model_problems(self, ensemble: RepositoryModel, step: _Step) -> Iterator[Problem]:
        path = ensemble.config_path
        model = self._step_model(step)
        if model is None:
            if step.model_name in self.repository.broken:
                return  # its config's own problem is reported already
            folder = self.repository.root / step.model_name
            if folder.is_dir():
                yield Problem(
                    path, f"{step.label}: model folder '{step.model_name}' has no {CONFIG_FILE}"
                )
            else:
                available = _join(sorted(self.repository.models)) or "none"
                yield Problem(
                    path,
                    f"{step.label}: model '{step.model_name}' is not in the repository "
                    f"(models: {available})",
                )
            return
        yield from self._version_problem(ensemble, step, model)
        ensemble_batch = int(ensemble.config.max_batch_size)
        step_batch = int(model.config.max_batch_size)
        if 0 < step_batch < ensemble_batch:
            yield Problem(
                path,
                f"max_batch_size {ensemble_batch} of the ensemble is larger than "
                f"max_batch_size {step_batch} of {step.label}",
            )
        input_names = [str(i.name) for i in model.config.input]
        output_names = [str(o.name) for o in model.config.output]
        for model_input, tensor in step.input_map.items():
            if model_input not in input_names:
                yield Problem(
                    path,
                    f"{step.label} maps ensemble tensor '{tensor}' to input '{model_input}', "
                    f"but {model.name} has no such input (inputs: {_join(input_names) or 'none'})",
                )
        for model_output, tensor in step.output_map.items():
            if model_output not in output_names:
                yield Problem(
                    path,
                    f"{step.label} maps output '{model_output}' to ensemble tensor '{tensor}', "
                    f"but {model.name} has no such output "
                    f"(outputs: {_join(output_names) or 'none'})",
                )
        mapped = step.input_map
        for model_input in model.config.input:
            if model_input.name not in mapped and not model_input.optional:
                yield Problem(
                    path,
                    f"{step.label} leaves input '{model_input.name}' of {model.name} unmapped; "
                    "add it to input_map",
                )

    def _version_problem(
        self, ensemble: RepositoryModel, step: _Step, model: RepositoryModel
    ) -> Iterator[Problem]:
        if step.model_version == -1 or not model.versions:
            return  # -1 is "latest"; a model without versions is reported on its own
        served = _served_versions(model)
        if step.model_version in served:
            return
        if step.model_version in model.versions:
            reason = f"which its version_policy does not load (loaded: {_join(map(str, served))})"
        else:
            reason = f"which does not exist (versions: {_join(map(str, model.versions))})"
            if step.model_version == 0:
                # proto3 default: a step without model_version asks for version 0 (server #5474)
                reason += "; an omitted model_version means 0, use model_version: -1 for the latest"
        yield Problem(
            ensemble.config_path,
            f"{step.label} asks for version {step.model_version} of {model.name}, {reason}",
        )

    # --- data flow --------------------------------------------------------------------------

    def is_decoupled(self, name: str) -> bool:
        """model_transaction_policy.decoupled; an ensemble is decoupled when a step of it is."""
        model = self.repository.models.get(name)
        if model is None:
            return False
        if not self.repository.is_ensemble(name):
            return bool(model.config.model_transaction_policy.decoupled)
        if name not in self._decoupled:
            if name in self._in_progress:
                return False  # a cycle between ensembles, reported elsewhere
            self._in_progress.add(name)
            self._decoupled[name] = self._flow(model).decoupled
            self._in_progress.discard(name)
        return self._decoupled[name]

    def _flow(self, ensemble: RepositoryModel) -> _Flow:
        flow = _Flow(self, ensemble)
        flow.run()
        return flow


def _repeated_key_messages(step: _Step) -> Iterator[str]:
    """Keys repeated in one map (protobuf keeps only the last) and outputs sharing a tensor."""
    for kind, entries in (("input_map", step.input_entries), ("output_map", step.output_entries)):
        values: dict[str, list[str]] = {}
        for key, value in entries:
            values.setdefault(key, []).append(value)
        side = "input" if kind == "input_map" else "output"
        for key, mapped in values.items():
            if len(mapped) > 1:
                shown = _join(f"'{v}'" for v in mapped)
                yield (
                    f"{step.label}: {kind} lists model {side} '{key}' {len(mapped)} times "
                    f"({shown}); protobuf keeps only the last ('{mapped[-1]}')"
                )
    writers: dict[str, list[str]] = {}
    for model_output, tensor in step.output_map.items():
        writers.setdefault(tensor, []).append(model_output)
    for tensor, outputs in writers.items():
        if len(outputs) > 1:
            yield (
                f"{step.label} maps outputs {_join(repr(o) for o in outputs)} "
                f"to the same ensemble tensor '{tensor}'"
            )


class _Flow:
    """The data flow of one ensemble: producers, consumers, run order, decoupled origins."""

    def __init__(self, checker: _EnsembleChecker, ensemble: RepositoryModel) -> None:
        self.checker = checker
        self.repository = checker.repository
        self.ensemble = ensemble
        self.path = ensemble.config_path
        # Steps without model_name still wire tensors: keeping them avoids follow-on reports.
        self.steps = list(self.repository.steps[ensemble.name])
        self.problems: list[Problem] = []
        self.decoupled = False
        self.producers: dict[str, _Producer] = {}
        self.consumers: dict[str, list[tuple[_Step, str]]] = {}
        self.output_names = [str(o.name) for o in ensemble.config.output]
        self.batching = int(ensemble.config.max_batch_size) > 0

    def _error(self, message: str) -> None:
        self.problems.append(Problem(self.path, message))

    def run(self) -> None:
        self._link()
        self._check_connections()
        self._check_tensor_types()
        order = self._run_order()
        self._check_decoupled(order)

    def _link(self) -> None:
        for ensemble_input in self.ensemble.config.input:
            self.producers.setdefault(
                str(ensemble_input.name), _Producer(None, ensemble_input.name)
            )
        for step in self.steps:
            for model_output, tensor in step.output_map.items():
                previous = self.producers.get(tensor)
                if previous is None:
                    self.producers[tensor] = _Producer(step, model_output)
                elif previous.step is None:
                    self._error(
                        f"{step.label} writes ensemble tensor '{tensor}', which is an ensemble "
                        "input; a tensor can have only one producer"
                    )
                elif previous.step is not step:
                    self._error(
                        f"ensemble tensor '{tensor}' is written by both {previous.step.label} "
                        f"and {step.label}; a tensor can appear in only one output_map"
                    )
            for model_input, tensor in step.input_map.items():
                self.consumers.setdefault(tensor, []).append((step, model_input))

    def _check_connections(self) -> None:
        for ensemble_input in self.ensemble.config.input:
            if ensemble_input.name not in self.consumers:
                self._error(f"ensemble input '{ensemble_input.name}' is not used by any step")
        for name in self.output_names:
            if name not in self.producers:
                self._error(
                    f"ensemble output '{name}' is not written by any step "
                    f"(no output_map maps to '{name}')"
                )
        for step in self.steps:
            for model_input, tensor in step.input_map.items():
                if tensor not in self.producers:
                    self._error(
                        f"{step.label} reads ensemble tensor '{tensor}' for input "
                        f"'{model_input}', but no step writes '{tensor}' and it is not an "
                        "ensemble input"
                    )
        for tensor, producer in self.producers.items():
            if producer.step is None or tensor in self.consumers or tensor in self.output_names:
                continue
            self._error(
                f"ensemble tensor '{tensor}', written by {producer.step.label} from its output "
                f"'{producer.output}', is not used by any step or ensemble output"
            )

    # --- data types and shapes --------------------------------------------------------------

    def _producer_tensor(self, tensor: str) -> _Tensor | None:
        producer = self.producers.get(tensor)
        if producer is None:
            return None
        if producer.step is None:
            for ensemble_input in self.ensemble.config.input:
                if ensemble_input.name == tensor:
                    return _Tensor(
                        int(ensemble_input.data_type),
                        _io_dims(ensemble_input, use_reshape=True),
                        self.batching,
                        f"ensemble input '{tensor}'",
                    )
            return None
        return self._step_tensor(producer.step, producer.output, outputs=True)

    def _step_tensor(self, step: _Step, name: str, outputs: bool) -> _Tensor | None:
        model = self.repository.models.get(step.model_name)
        if model is None:
            return None
        declared = model.config.output if outputs else model.config.input
        for io in declared:
            if io.name == name:
                kind = "output" if outputs else "input"
                return _Tensor(
                    int(io.data_type),
                    _io_dims(io, use_reshape=False),
                    int(model.config.max_batch_size) > 0,
                    f"{kind} '{name}' of {step.label}",
                )
        return None

    def _check_tensor_types(self) -> None:
        for step in self.steps:
            for model_input, tensor in step.input_map.items():
                produced = self._producer_tensor(tensor)
                expected = self._step_tensor(step, model_input, outputs=False)
                if produced is None or expected is None:
                    continue
                lead = (
                    f"{step.label} maps ensemble tensor '{tensor}' to input '{model_input}' "
                    f"of {step.model_name}, which expects"
                )
                self._compare(lead, f"'{tensor}' is", f"'{tensor}' has shape", produced, expected)
        for output in self.ensemble.config.output:
            producer = self.producers.get(str(output.name))
            if producer is None or producer.step is None:
                continue
            produced = self._step_tensor(producer.step, producer.output, outputs=True)
            if produced is None:
                continue
            declared = _Tensor(
                int(output.data_type),
                _io_dims(output, use_reshape=True),
                self.batching,
                f"ensemble output '{output.name}'",
            )
            step = producer.step
            lead = (
                f"{step.label} maps output '{producer.output}' of {step.model_name} to ensemble "
                f"output '{output.name}', which the ensemble declares as"
            )
            self._compare(
                lead,
                f"{step.model_name} produces",
                f"{step.model_name} produces shape",
                produced,
                declared,
                with_origin=False,
            )

    def _compare(
        self,
        lead: str,
        actual_type: str,
        actual_shape: str,
        produced: _Tensor,
        expected: _Tensor,
        with_origin: bool = True,
    ) -> None:
        origin = f" ({produced.origin})" if with_origin else ""
        if produced.data_type != expected.data_type:
            self._error(
                f"{lead} {dtype_name(expected.data_type)} but {actual_type} "
                f"{dtype_name(produced.data_type)}{origin}"
            )
        elif _shape_mismatch(produced, expected):
            full = produced.batching != expected.batching
            self._error(
                f"{lead} shape {expected.shape(full)} but {actual_shape} "
                f"{produced.shape(full)}{origin}"
            )

    # --- order, cycles, decoupled models ----------------------------------------------------

    def _run_order(self) -> list[_Step]:
        """Steps in an order Triton can run them; reports cycles among the steps left over."""
        ready = {str(i.name) for i in self.ensemble.config.input}
        order: list[_Step] = []
        pending = list(self.steps)
        progressed = True
        while progressed:
            progressed = False
            for step in list(pending):
                if all(tensor in ready for tensor in step.input_map.values()):
                    order.append(step)
                    pending.remove(step)
                    ready.update(step.output_map.values())
                    progressed = True
        # Steps waiting on a tensor nobody writes are reported already; the others wait on a cycle.
        blocked = [s for s in pending if all(t in self.producers for t in s.input_map.values())]
        for cycle in _step_cycles(blocked, self.producers):
            names = " -> ".join(s.label for s in cycle)
            self._error(f"steps form a cycle, so none of them can run: {names}")
        return order

    def _check_decoupled(self, order: list[_Step]) -> None:
        """ValidateEnsembleConfig: a step's inputs must not come from different decoupled models."""
        labels = {str(i.name): 0 for i in self.ensemble.config.input}
        origins = {0: "the ensemble request"}
        for step in order:
            sources = {
                tensor: labels[tensor] for tensor in step.input_map.values() if tensor in labels
            }
            if len(set(sources.values())) > 1:
                self._error(
                    f"{step.label} receives inputs originated from different decoupled models: "
                    + _origins_text(sources, origins)
                )
            label = min(sources.values(), default=0)
            if self.checker.is_decoupled(step.model_name):
                label = len(origins)
                origins[label] = f"decoupled {step.label}"
                self.decoupled = True
            for tensor in step.output_map.values():
                labels.setdefault(tensor, label)
        outputs = {name: labels[name] for name in self.output_names if name in labels}
        if len(set(outputs.values())) > 1:
            self._error(
                "ensemble outputs originated from different decoupled models: "
                + _origins_text(outputs, origins)
            )


def _origins_text(sources: dict[str, int], origins: dict[int, str]) -> str:
    return ", ".join(f"'{tensor}' from {origins[label]}" for tensor, label in sources.items())


def _step_cycles(steps: list[_Step], producers: dict[str, _Producer]) -> list[list[_Step]]:
    """One cycle (first step repeated at the end) per strongly connected group of ``steps``."""
    by_number = {s.number: s for s in steps}
    edges: dict[int, list[int]] = {s.number: [] for s in steps}
    for step in steps:
        for tensor in step.input_map.values():
            producer = producers[tensor].step
            if producer is not None and producer.number in by_number:
                edges[producer.number].append(step.number)
    return [[by_number[n] for n in cycle] for cycle in _cycles(edges)]


def _cycles(edges: dict[Any, list[Any]]) -> list[list[Any]]:
    """One cycle per strongly connected component (Tarjan) that has one; nodes sorted."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    stack: list[Any] = []
    on_stack: set[Any] = set()
    components: list[list[Any]] = []

    def visit(node: Any) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, []):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)

    cycles = []
    for component in components:
        members = set(component)
        start = min(component)
        if len(component) == 1 and start not in edges.get(start, []):
            continue
        cycles.append(_path_back(start, members, edges))
    return sorted(cycles, key=lambda c: c[0])


def _path_back(start: Any, members: set[Any], edges: dict[Any, list[Any]]) -> list[Any]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous: dict[Any, Any] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(edges.get(node, [])):
                if successor not in members:
                    continue
                if successor == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = previous[node]
                    return [start, *reversed(path[1:]), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return [start, start]


def _ensemble_cycle_problems(repository: _Repository) -> Iterator[Problem]:
    """CircularDependencyCheck: ensembles that contain themselves through their steps."""
    edges = {
        name: sorted({s.model_name for s in steps if repository.is_ensemble(s.model_name)})
        for name, steps in repository.steps.items()
    }
    for cycle in _cycles(edges):
        yield Problem(
            repository.models[cycle[0]].config_path,
            f"circular dependency between ensembles: {' -> '.join(cycle)}",
        )


# --------------------------------------------------------------------------------------------
# The project's rules for models/<name>/


def _project_problems(folder: ModelFolder, repository: _Repository) -> Iterator[Problem]:
    try:
        read_model_version(folder.version_file)
    except ConfigError as e:
        yield Problem(folder.version_file, _without_prefix(str(e), folder.version_file))

    ensembles = [name for name, model in repository.models.items() if is_ensemble(model.config)]
    expected_name = f"{folder.name}{PIPELINE_SUFFIX}"
    if not ensembles and not repository.broken:
        found = _join(sorted(repository.models)) or "no model folders"
        yield Problem(
            folder.path,
            f'no ensemble (a model folder with platform: "ensemble") among {found}; '
            f"model '{folder.name}' needs exactly one, named {expected_name}",
        )
    elif len(ensembles) > 1:
        yield Problem(
            folder.path,
            f"{len(ensembles)} ensembles ({_join(sorted(ensembles))}); model '{folder.name}' "
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

    python_steps = []
    for name, model in repository.models.items():
        yield from _sagemaker_text_problems(repository, model)
        if not model.config.name:
            yield Problem(model.config_path, f'no name; set name: "{name}"')
        yield from _execution_env_problems(model)
        if backend_of(model.config) == PYTHON_BACKEND:
            python_steps.append(name)
            yield from _python_file_problems(model)
        yield from _weight_problems(model)
    if python_steps and not folder.requirements_file.is_file():
        yield Problem(
            folder.requirements_file,
            f"missing; the Python steps ({_join(python_steps)}) need it to build their "
            "environment (it may be empty)",
        )


def _without_prefix(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _sagemaker_text_problems(repository: _Repository, model: RepositoryModel) -> Iterator[Problem]:
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


def _unused_model_problems(repository: _Repository, ensemble: str) -> Iterator[Problem]:
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


def _execution_env_problems(model: RepositoryModel) -> Iterator[Problem]:
    if EXECUTION_ENV_KEY not in model.config.parameters:
        return
    value = str(model.config.parameters[EXECUTION_ENV_KEY].string_value)
    prefix = f"{MODEL_DIRECTORY_TOKEN}/"
    example = f"{prefix}python_env.tar.gz"
    where = f"parameter {EXECUTION_ENV_KEY} '{value}'"
    if not value.startswith(prefix):
        reason = (
            "an absolute path does not travel with the artifact"
            if value.startswith("/")
            else "Triton does not resolve a relative path against the step folder"
        )
        yield Problem(
            model.config_path, f"{where} must start with {prefix} ({reason}), e.g. {example}"
        )
    elif ".." in PurePosixPath(value[len(prefix) :]).parts:
        yield Problem(
            model.config_path,
            f"{where} leaves the step folder through '..'; keep the environment inside "
            f"{model.name}/, e.g. {example}",
        )
    elif not value[len(prefix) :].strip("/"):
        yield Problem(model.config_path, f"{where} names no file, e.g. {example}")


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
    if filename is None:
        return
    for version in model.versions:
        weight = model.path / str(version) / filename
        if not weight.exists() and not weight.with_name(f"{filename}.dvc").is_file():
            yield Problem(
                weight.parent,
                f"neither {filename} nor its DVC pointer {filename}.dvc; {model.name} loads "
                f"{version}/{filename} (run `dvc pull`, or `dvc add` the weight file)",
            )


# --------------------------------------------------------------------------------------------
# Small helpers


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    # Group by file, keeping the order checks found them in within one file.
    return sorted(problems, key=lambda p: str(p.path))


__all__ = [
    "ERROR",
    "WARNING",
    "Problem",
    "Severity",
    "count",
    "display_path",
    "summary_line",
    "validate_model_folder",
    "validate_path",
    "validate_paths",
    "validate_repository",
]
