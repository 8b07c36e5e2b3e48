"""A model repository as the validator reads it: every config that parses, its raw text (SageMaker
matches on it), the ensemble steps with their maps as written, and what could not be read."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tritonclient.grpc import model_config_pb2

from mmetools.core.errors import ConfigError
from mmetools.model.config import (
    CONFIG_FILE,
    DEFAULT_MODEL_FILENAMES,
    ENSEMBLE_PLATFORM,
    PYTHON_BACKEND,
    ModelConfig,
    RepositoryModel,
    model_folders,
    read_config_file,
)
from mmetools.model.validation.problems import ERROR, WARNING, Problem, display_path

logger = logging.getLogger(__name__)

# Folders inside a model folder that Triton never takes for versions (model_lifecycle.cc).
_NON_VERSION_DIRS = frozenset({"warmup", "initial_state", "configs"})
_DIGITS = re.compile(r"^[0-9]+$")

MapEntries = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Step:
    """One step of an ensemble, with its maps as written (repeated keys kept, in order)."""

    number: int
    model_name: str
    model_version: int
    input_entries: MapEntries  # (model input, ensemble tensor)
    output_entries: MapEntries  # (model output, ensemble tensor)

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
class Repository:
    root: Path
    models: dict[str, RepositoryModel]
    texts: dict[str, str]
    steps: dict[str, tuple[Step, ...]]  # per ensemble (a model with ensemble_scheduling)
    broken: frozenset[str]  # folders whose config.pbtxt could not be read or parsed
    load_problems: tuple[Problem, ...]
    # folders without config.pbtxt that Triton completes from the model file (not checkable)
    auto_completed: frozenset[str] = frozenset()

    def is_ensemble(self, name: str) -> bool:
        return name in self.steps


def read_repository(root: Path) -> Repository:
    """Read every model folder under ``root``; unreadable configs become load problems."""
    models: dict[str, RepositoryModel] = {}
    texts: dict[str, str] = {}
    steps: dict[str, tuple[Step, ...]] = {}
    broken: set[str] = set()
    problems: list[Problem] = []
    for folder in model_folders(root):
        config_path = folder / CONFIG_FILE
        escape = _escaping_symlink(root, folder)
        if escape is not None:
            problems.append(escape)
            broken.add(folder.name)
            continue
        try:
            read = read_config_file(config_path)
        except UnicodeDecodeError as e:
            problems.append(Problem(config_path, f"not UTF-8 text ({e.reason} at byte {e.start})"))
            broken.add(folder.name)
            continue
        except ConfigError as e:
            problems.append(_syntax_problem(config_path, e))
            broken.add(folder.name)
            continue
        text = read.text
        config = ModelConfig()
        config.CopyFrom(read.config)
        versions, ignored = _version_dirs(folder)
        for name in ignored:
            problems.append(
                Problem(
                    folder / name,
                    f"version folder '{name}' has a leading zero; Triton ignores it",
                    WARNING,
                )
            )
        problems.extend(filter(None, (_escaping_symlink(root, folder / str(v)) for v in versions)))
        models[folder.name] = RepositoryModel(folder.name, folder, config, versions)
        texts[folder.name] = text
        if config.HasField("ensemble_scheduling") or config.platform == ENSEMBLE_PLATFORM:
            steps[folder.name] = _read_steps(text, config)
    step_models = {step.model_name for ensemble in steps.values() for step in ensemble}
    auto_completed: set[str] = set()
    for folder in _unconfigured_folders(root, step_models):
        problem = _escaping_symlink(root, folder) or _unconfigured_problem(folder)
        problems.append(problem)
        (auto_completed if not problem.is_error else broken).add(folder.name)
    return Repository(
        root,
        models,
        texts,
        steps,
        frozenset(broken),
        tuple(problems),
        frozenset(auto_completed),
    )


def _escaping_symlink(root: Path, folder: Path) -> Problem | None:
    """A model or version folder that is a symlink leading out of ``root``: Triton follows it,
    and packaging would ship (or refuse) files from elsewhere."""
    if not folder.is_symlink():
        return None
    target = folder.resolve()
    if target.is_relative_to(root.resolve()):
        return None
    return Problem(
        folder,
        f"is a symlink to {display_path(target)}, outside {display_path(root)}; "
        "put the folder itself there (an artifact holds files, never links)",
    )


def _unconfigured_folders(root: Path, step_models: set[str]) -> list[Path]:
    """Folders without config.pbtxt that Triton would take for models: those with a version
    folder, and those an ensemble step names. Others (tests/, hidden folders) are not models."""
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or (child / CONFIG_FILE).exists():
            continue
        if child.name in step_models or any(_version_dirs(child)[0]):
            found.append(child)
    return found


def _unconfigured_problem(folder: Path) -> Problem:
    """A model folder without config.pbtxt (model_config_utils.cc, AutoCompleteBackendFields):
    Triton picks the backend from the model file in a version folder and lets the backend fill
    in the inputs and outputs; without a model file it cannot determine a backend."""
    versions = [folder / str(v) for v in _version_dirs(folder)[0]]
    for version in reversed(versions):
        for backend, filename in DEFAULT_MODEL_FILENAMES.items():
            model_file = version / filename
            if not model_file.exists():
                continue
            shown = f"{folder.name}/{version.name}/{filename}"
            if backend == PYTHON_BACKEND and not _defines_auto_complete(model_file):
                return Problem(
                    folder,
                    f"no {CONFIG_FILE}, and {shown} defines no auto_complete_config: Triton "
                    "serves it with the python backend but without inputs or outputs; add "
                    f"{folder.name}/{CONFIG_FILE}",
                )
            return Problem(
                folder,
                f"no {CONFIG_FILE}: Triton fills it in from {shown} (backend {backend}), which "
                "needs auto-complete (on unless --disable-auto-complete-config); its inputs and "
                f"outputs cannot be checked statically: add {folder.name}/{CONFIG_FILE}",
                WARNING,
            )
    misplaced = [v / CONFIG_FILE for v in versions if (v / CONFIG_FILE).is_file()]
    hint = (
        f"; {display_path(misplaced[0])} is inside a version folder: move it to "
        f"{folder.name}/{CONFIG_FILE}"
        if misplaced
        else ""
    )
    known = ", ".join(sorted(DEFAULT_MODEL_FILENAMES.values()))
    return Problem(
        folder,
        f"no {CONFIG_FILE} and no model file Triton recognizes ({known}) in a version folder: "
        f"Triton cannot determine its backend{hint}",
    )


_AUTO_COMPLETE = re.compile(r"^\s*def\s+auto_complete_config\s*\(", re.MULTILINE)


def _defines_auto_complete(model_py: Path) -> bool:
    try:
        return bool(_AUTO_COMPLETE.search(model_py.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def served_versions(model: RepositoryModel) -> tuple[int, ...]:
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


def _syntax_problem(config_path: Path, error: ConfigError) -> Problem:
    cause = error.__cause__
    line = column = None
    if isinstance(cause, text_format.ParseError):
        line, column = cause.GetLine(), cause.GetColumn()
    message = str(error)
    start = message.find("invalid config.pbtxt")
    prefix = f"{config_path}: "
    if start >= 0:
        message = message[start:]
    elif message.startswith(prefix):
        message = message[len(prefix) :]
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


def _read_steps(text: str, config: ModelConfig) -> tuple[Step, ...]:
    shadow = _config_class_keeping_map_entries()()
    try:
        text_format.Parse(text, shadow)
    except text_format.ParseError:  # cannot happen when the real parse passed; stay safe
        logger.debug("re-parse of step maps failed; duplicate map keys go unnoticed")
        return _steps(config.ensemble_scheduling.step, _entries_of_map)
    return _steps(shadow.ensemble_scheduling.step, _entries_as_written)


def _steps(raw_steps: Any, entries: Callable[[Any], MapEntries]) -> tuple[Step, ...]:
    return tuple(
        Step(
            number,
            str(step.model_name),
            int(step.model_version),
            entries(step.input_map),
            entries(step.output_map),
        )
        for number, step in enumerate(raw_steps, start=1)
    )


def _entries_as_written(entries: Any) -> MapEntries:
    return tuple((str(e.key), str(e.value)) for e in entries)


def _entries_of_map(mapping: Any) -> MapEntries:
    # A real protobuf map has lost its order and repeated keys: sorted keeps reports stable.
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))
