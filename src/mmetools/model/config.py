"""Reading Triton model repositories: config.pbtxt through Triton's own protobuf schema.

``tritonclient`` ships the classes generated from Triton's model_config.proto, so a config is
parsed exactly as Triton parses it (protobuf text format); nothing here hand-parses pbtxt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mmetools.core.errors import ConfigError
from mmetools.core.memo import StatMemo

logger = logging.getLogger(__name__)

# TypeAlias: tritonclient has no type stubs, so without it mypy rejects ModelConfig as a type.
ModelConfig: TypeAlias = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType

CONFIG_FILE = "config.pbtxt"

ENSEMBLE_PLATFORM = "ensemble"
ONNX_PLATFORM = "onnxruntime_onnx"
TORCHSCRIPT_PLATFORM = "pytorch_libtorch"
PYTHON_BACKEND = "python"

# How Triton maps a platform to the backend that serves it (triton core, backend_model.cc).
PLATFORM_BACKENDS = {
    ONNX_PLATFORM: "onnxruntime",
    TORCHSCRIPT_PLATFORM: "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "tensorrt_plan": "tensorrt",
}
# Weight file Triton looks for when a config does not set default_model_filename.
DEFAULT_MODEL_FILENAMES = {
    "onnxruntime": "model.onnx",
    "pytorch": "model.pt",
    "tensorflow": "model.savedmodel",
    "tensorrt": "model.plan",
    PYTHON_BACKEND: "model.py",
}
KNOWN_BACKENDS = frozenset(
    {
        "python",
        "onnxruntime",
        "pytorch",
        "tensorflow",
        "tensorrt",
        "openvino",
        "fil",
        "dali",
        "identity",
        "repeat",
        "square",
        "vllm",
        "tensorrtllm",
    }
)

_VERSION_DIR = re.compile(r"^[0-9]+$")

# A config.pbtxt is a few KB; reading one of a GiB whole took 6 GB of memory. Input quoted in an
# error (protobuf echoes the offending token) is clipped so a garbage line cannot flood the log.
MAX_CONFIG_BYTES = 1 << 20
MAX_QUOTED_CHARS = 200


def clipped(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def read_config_text(path: Path) -> str:
    """The text of a config.pbtxt, refused unread beyond MAX_CONFIG_BYTES or when not UTF-8."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB, the most a config.pbtxt "
            "may hold here; it is not a Triton model configuration"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def parse_config(text: str, path: Path) -> ModelConfig:
    """Parse config.pbtxt text; errors name ``path`` with the line and column protobuf reports."""
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        # protobuf formats its position as "line:column : message"
        message = str(e)
        match = re.match(r"^(\d+):(\d+)\s*:\s*(.*)$", message, re.DOTALL)
        where = f"{path}:{match.group(1)}:{match.group(2)}" if match else str(path)
        detail = clipped(match.group(3) if match else message)
        raise ConfigError(f"{where}: invalid config.pbtxt: {detail}") from e
    undefined = list(_undefined_enum_values(config))
    if undefined:
        raise ConfigError(f"{path}: invalid config.pbtxt: {'; '.join(undefined)}")
    return config


def _undefined_enum_values(message: Any, where: str = "") -> Iterator[str]:
    """Enum fields set to a number their enum does not define (``data_type: 99``). Triton's
    enums are proto3 enums, which are open: protobuf parses any number without complaint."""
    for field, value in message.ListFields():
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].message_type is not None:
                    for key, item in sorted(value.items()):
                        yield from _undefined_enum_values(item, f"{where}{field.name}['{key}'].")
                continue
            repeated = _is_repeated(field)
            for index, item in enumerate(value if repeated else [value]):
                name = getattr(item, "name", "") if repeated else ""
                label = f"{field.name} '{name}'" if name else field.name
                label += f"[{index}]" if repeated and not name else ""
                yield from _undefined_enum_values(item, f"{where}{label}.")
        elif field.enum_type is not None:
            known = [v.name for v in field.enum_type.values if not v.name.endswith("INVALID")]
            numbers = value if _is_repeated(field) else [value]
            for number in numbers:
                if number not in field.enum_type.values_by_number:
                    owner = f"{where.removesuffix('.')}: " if where else ""
                    yield (
                        f"{owner}{field.name} {number} is not a {field.enum_type.name} value "
                        f"(one of {', '.join(known)})"
                    )


@dataclass(frozen=True)
class ConfigFile:
    """A config.pbtxt as read from disk: its text and its parsed message (do not mutate it:
    it is shared; ``load_config`` hands out copies)."""

    text: str
    config: ModelConfig


def _read_config_file(path: Path) -> ConfigFile:
    text = read_config_text(path)  # size-capped: a 1 GiB file is refused unread
    return ConfigFile(text, parse_config(text, path))


_CONFIG_FILES: StatMemo[ConfigFile] = StatMemo()


def read_config_file(path: Path) -> ConfigFile:
    """Read and parse ``path`` once per state of the file (the stat-keyed memo); raises
    FileNotFoundError, UnicodeDecodeError or ConfigError."""
    return _CONFIG_FILES.get(path, _read_config_file)


def load_config(path: Path) -> ModelConfig:
    """A private copy of the parsed ``path`` (callers may change it)."""
    try:
        parsed = read_config_file(path).config
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    config = ModelConfig()
    config.CopyFrom(parsed)
    return config


def config_parse_count() -> int:
    """How many times a config.pbtxt file was parsed in this process (tests assert on it)."""
    return _CONFIG_FILES.computed


def config_to_text(config: ModelConfig) -> str:
    return str(text_format.MessageToString(config))


def backend_of(config: ModelConfig) -> str:
    """The backend Triton will run this model with ("" for ensembles and unknown platforms)."""
    if config.backend:
        return str(config.backend)
    return PLATFORM_BACKENDS.get(config.platform, "")


def is_ensemble(config: ModelConfig) -> bool:
    return bool(config.platform == ENSEMBLE_PLATFORM)


def _is_repeated(field: Any) -> bool:
    # protobuf >= 5.28 has is_repeated and deprecates label; older releases only have label.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else bool(field.label == field.LABEL_REPEATED)


def dtype_name(dtype: int) -> str:
    """TYPE_FP32, ...; a number DataType does not define (parse_config refuses those, but a
    config built in code may hold one) shows as the number instead of raising."""
    if dtype not in DataType.DESCRIPTOR.values_by_number:
        return f"data_type {dtype}"
    return str(DataType.Name(dtype))


@dataclass(frozen=True)
class RepositoryModel:
    """One model folder of a Triton model repository, with its parsed config."""

    name: str  # folder name, which is the name Triton serves it under
    path: Path
    config: ModelConfig
    versions: tuple[int, ...]  # numeric version folders present on disk

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE


def version_folders(model_dir: Path) -> tuple[int, ...]:
    return tuple(
        sorted(
            int(child.name)
            for child in model_dir.iterdir()
            if child.is_dir() and _VERSION_DIR.match(child.name)
        )
    )


def model_folders(repository: Path) -> list[Path]:
    """Folders directly under ``repository`` that hold a config.pbtxt, sorted by name."""
    return sorted(
        child
        for child in repository.iterdir()
        if child.is_dir() and (child / CONFIG_FILE).is_file()
    )


def load_repository(repository: Path) -> tuple[dict[str, RepositoryModel], list[str]]:
    """Parse every model of a repository; returns the models that parsed and one line per error."""
    models: dict[str, RepositoryModel] = {}
    errors: list[str] = []
    for folder in model_folders(repository):
        try:
            config = load_config(folder / CONFIG_FILE)
        except ConfigError as e:
            errors.append(str(e))
            continue
        models[folder.name] = RepositoryModel(folder.name, folder, config, version_folders(folder))
    return models, errors
