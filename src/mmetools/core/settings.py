"""Project settings: ``mmetools.toml`` at the repository root, overridden by environment variables.

Every setting has an embedded default, so a fresh clone works with no file at all: envs for the
local Python, the bundled CPU Triton, and ``file:`` publish destinations inside the repository.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mmetools.core.errors import ConfigError, EndpointConfigError
from mmetools.core.targets import (
    DEFAULT_IMAGE,
    EXPLICIT_KEYS,
    IMAGE_PACKAGES_KEY,
    ServingTarget,
    resolve_target,
)

SETTINGS_FILE = "mmetools.toml"
SECTIONS = ("cache", "endpoints", "env", "publish", "target", "triton")

# Environment variable -> (section, key) it overrides.
ENV_OVERRIDES = {
    "MMETOOLS_STAGING_URI": ("publish", "staging_uri"),
    "MMETOOLS_PRODUCTION_URI": ("publish", "production_uri"),
    "MMETOOLS_PRODUCTION_BRANCH": ("publish", "production_branch"),
    "MMETOOLS_ENV_BACKEND": ("env", "backend"),
    "MMETOOLS_TARGET_IMAGE": ("target", "image"),
    "MMETOOLS_TRITON_MODE": ("triton", "mode"),
    "MMETOOLS_TRITON_IMAGE": ("triton", "image"),
    "MMETOOLS_CACHE_DIR": ("cache", "dir"),
}


@dataclass(frozen=True)
class EnvSettings:
    backend: str = "auto"  # "auto" (conda when conda/mamba is on PATH), "conda" or "venv"
    # The env's Python, glibc and interpreter path come from [target] (mmetools.core.targets).


@dataclass(frozen=True)
class TargetSettings:
    """[target]: the serving image; the other keys only for images mmetools.core.targets does not know
    (or to override a known release's facts). Empty / None means "from the release table"."""

    image: str = DEFAULT_IMAGE
    triton_version: str = ""
    python_version: str = ""
    interpreter_path: str = ""
    glibc: str = ""
    glibcxx: str = ""
    numpy2_supported: bool | None = None
    # "numpy==1.26.4" (comma-separated pins, or "none"): what the image's Python has installed.
    image_packages: str = ""


@dataclass(frozen=True)
class TritonSettings:
    mode: str = "auto"  # "auto", "bundled", "native" or "docker"
    image: str = ""  # docker mode; "" means the [target] image
    version: str = "2.51.0"  # Triton release the artifacts are tested with (the bundled server's)
    # `test --artifact` refuses a tarball that unpacks to more than this (or than the free space).
    max_unpacked_mb: int = 64 * 1024


@dataclass(frozen=True)
class PublishSettings:
    # file: URIs may be relative ("file:.published/staging"): they resolve against the repository root.
    staging_uri: str = "file:.published/staging"
    production_uri: str = "file:.published/production"
    production_branch: str = "main"
    namespace_staging_by_branch: bool = True
    # An S3 endpoint that accepts connections and never answers must not hang a publish.
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    deadline_s: float = 1800.0  # the whole `mmetools publish` run, retries included


@dataclass(frozen=True)
class CacheSettings:
    dir: str = ""  # "" means $XDG_CACHE_HOME/mmetools or ~/.cache/mmetools


@dataclass(frozen=True)
class Settings:
    root: Path
    env: EnvSettings = EnvSettings()
    triton: TritonSettings = TritonSettings()
    publish: PublishSettings = PublishSettings()
    cache: CacheSettings = CacheSettings()
    target_settings: TargetSettings = TargetSettings()
    # [endpoints.<stage>] tables as written; mmetools.deploy.declaration parses and checks them
    # (only the endpoint commands need them, so a bad one does not stop a build).
    endpoints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def target(self) -> ServingTarget:
        """The serving target (release facts of [target] image, explicit values over them)."""
        explicit = {key: getattr(self.target_settings, key) for key in EXPLICIT_KEYS}
        explicit[IMAGE_PACKAGES_KEY] = self.target_settings.image_packages
        return resolve_target(
            self.target_settings.image, explicit, where=f"{self.root / SETTINGS_FILE} [target]"
        )

    @property
    def cache_dir(self) -> Path:
        if self.cache.dir:
            return Path(self.cache.dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mmetools"


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder up from ``start`` with mmetools.toml or .git."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file() or (folder / ".git").exists():
            return folder
    return here


def _section(cls: type[Any], path: Path, name: str, values: Mapping[str, Any]) -> Any:
    default = cls()
    # A None default (an optional flag) takes a bool.
    allowed = {
        f.name: bool if getattr(default, f.name) is None else type(getattr(default, f.name))
        for f in fields(cls)
    }
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(
                f"{path}: [{name}] has no setting '{key}' (known: {', '.join(sorted(allowed))})"
            )
        if not isinstance(value, allowed[key]):
            raise ConfigError(
                f"{path}: [{name}] {key} must be a {allowed[key].__name__}, got {value!r}"
            )
    return replace(default, **values)


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``<root>/mmetools.toml`` (optional) and apply the MMETOOLS_* environment overrides."""
    root = root if root is not None else find_root()
    environ = os.environ if environ is None else environ
    path = root / SETTINGS_FILE
    data: dict[str, dict[str, Any]] = {}
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                "TOML files must be UTF-8"
            ) from e
        for name, values in raw.items():
            if name not in SECTIONS or not isinstance(values, dict):
                raise ConfigError(
                    f"{path}: unknown section [{name}] (known: {', '.join(sorted(SECTIONS))})"
                )
            data[name] = dict(values)
    for variable, (section, key) in ENV_OVERRIDES.items():
        if environ.get(variable):
            data.setdefault(section, {})[key] = environ[variable]
    return Settings(
        root=root,
        env=_section(EnvSettings, path, "env", data.get("env", {})),
        triton=_section(TritonSettings, path, "triton", data.get("triton", {})),
        publish=_section(PublishSettings, path, "publish", data.get("publish", {})),
        cache=_section(CacheSettings, path, "cache", data.get("cache", {})),
        target_settings=_section(TargetSettings, path, "target", data.get("target", {})),
        endpoints=_endpoints(path, data.get("endpoints", {})),
    )


def _endpoints(path: Path, tables: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """[endpoints.<stage>] tables, one per stage; their keys are checked by mmetools.deploy."""
    for stage, table in tables.items():
        if not isinstance(table, dict):
            raise EndpointConfigError(
                f"{path}: [endpoints] {stage} must be a table ([endpoints.{stage}]), got {table!r}"
            )
    return {stage: dict(table) for stage, table in tables.items()}
