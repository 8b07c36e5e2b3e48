"""Thresholds of ``mmetools diff``: ``models/<name>/regression.toml``, or the defaults.

    atol = 1e-5              # defaults for every output
    rtol = 1e-4
    max_beyond_share = 0.0   # share of float elements allowed beyond tolerance
    max_flip_rate = 0.0      # share of label elements allowed to change
    [outputs.PROBABILITY]    # per output, any of the same keys
    atol = 1e-3

Unknown keys, negative or non-finite numbers (``nan``, ``inf``) and outputs the ensemble does not have are ConfigErrors naming
the file and the key.
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mmetools.core.errors import ConfigError
from mmetools.model.cases import DEFAULT_ATOL, DEFAULT_RTOL, EnsembleSignature
from mmetools.model.folder import ModelFolder

logger = logging.getLogger(__name__)

REGRESSION_FILE = "regression.toml"


@dataclass(frozen=True)
class OutputThresholds:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    max_beyond_share: float = 0.0
    max_flip_rate: float = 0.0


@dataclass(frozen=True)
class Thresholds:
    default: OutputThresholds = OutputThresholds()
    outputs: Mapping[str, OutputThresholds] = field(default_factory=dict)
    source: str = "defaults"

    def of(self, output: str) -> OutputThresholds:
        return self.outputs.get(output, self.default)


def _thresholds(path: Path, where: str, raw: Mapping[str, Any], base: OutputThresholds) -> Any:
    allowed = {f.name for f in fields(OutputThresholds)}
    values: dict[str, float] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(
                f"{path}: {where}has no setting '{key}' (known: {', '.join(sorted(allowed))})"
            )
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{path}: {where}{key} must be a finite number >= 0, got {value!r}")
        values[key] = float(value)
    return replace(base, **values)


def load_thresholds(model: ModelFolder) -> Thresholds:
    """``models/<name>/regression.toml``; the defaults when the file is absent."""
    path = model.path / REGRESSION_FILE
    if not path.is_file():
        return Thresholds()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): TOML is UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    per_output = raw.pop("outputs", {})
    if not isinstance(per_output, dict):
        raise ConfigError(f"{path}: [outputs] must be a table of output name -> thresholds")
    default = _thresholds(path, "", raw, OutputThresholds())
    signature = EnsembleSignature.from_config(model.ensemble().config)
    outputs: dict[str, OutputThresholds] = {}
    for name, values in per_output.items():
        if name not in signature.outputs:
            raise ConfigError(
                f"{path}: [outputs.{name}]: '{name}' is not an output of ensemble "
                f"'{signature.model}' (its outputs: {', '.join(signature.outputs)})"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [outputs.{name}] must be a table")
        outputs[name] = _thresholds(path, f"[outputs.{name}] ", values, default)
    return Thresholds(default, outputs, str(path))
