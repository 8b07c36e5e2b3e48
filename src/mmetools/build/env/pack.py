"""Pack a model's env into its Python steps: ``<step>/python_env.tar.gz``, built or cached.

``pack_env`` checks every Python step's committed ``EXECUTION_ENV_PATH``, picks the install
source (the model's lock for the target's Python, else requirements.txt), builds the env with the
chosen backend into the cache unless it is there, and copies it into each step. ``prepare_env`` is
the pipeline's env step: ``pack_env``, or nothing when the model ships without an env.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmetools.build.env.backends import EnvBackend, Progress, select_backend
from mmetools.build.env.cache import (
    CACHE_SUBDIR,
    copy_record,
    place_copy,
    build_into_cache,
    discard_entry,
    entry_problem,
    remove_interrupted_builds,
)
from mmetools.build.env.image import LockSplit, split_lock
from mmetools.build.env.lock import lock_path, lock_problem, locked_digest
from mmetools.build.env.requirements import env_hash, normalized_requirements, requirements_digest
from mmetools.core.errors import ArtifactError, EnvPackError
from mmetools.core.settings import Settings
from mmetools.core.targets import ServingTarget
from mmetools.model.config import ModelConfig, RepositoryModel
from mmetools.model.folder import (
    ENV_ARCHIVE,
    EXECUTION_ENV_KEY,
    ModelFolder,
    env_placement,
    execution_env_problem,
    model_env_archive,
    model_env_value,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackedEnv:
    """The env of one model: the cached archive and the step folders that got a copy."""

    path: Path
    env_hash: str
    backend: str
    python_version: str
    cached: bool  # True when the archive came from the cache (nothing was built)
    steps: tuple[Path, ...] = ()


def check_execution_env_path(config: ModelConfig, config_path: Path) -> None:
    """Refuse an EXECUTION_ENV_PATH that names neither the model's one env nor the step's copy."""
    if EXECUTION_ENV_KEY not in config.parameters:
        return
    value = str(config.parameters[EXECUTION_ENV_KEY].string_value)
    problem = execution_env_problem(value, _model_name_of(config_path))
    if problem:
        raise EnvPackError(f"{config_path}: parameter {EXECUTION_ENV_KEY} '{value}' {problem}")


def require_execution_env_path(config: ModelConfig, config_path: Path, step: str) -> None:
    """The committed config must point EXECUTION_ENV_PATH at the packed env: mmetools never
    writes a config (packaging and tests change no tracked file)."""
    if EXECUTION_ENV_KEY not in config.parameters:
        raise EnvPackError(
            f"{config_path}: Python step {step} sets no {EXECUTION_ENV_KEY}, so Triton would not "
            f"use the env the env step packs for it; add these lines to the config:\n"
            f"{_parameter_block(_model_name_of(config_path))}"
        )
    check_execution_env_path(config, config_path)


def _model_name_of(config_path: Path) -> str:
    """The model a step's config belongs to: ``models/<model>/<step>/config.pbtxt``."""
    return config_path.parent.parent.name


def _parameter_block(model_name: str) -> str:
    return (
        "parameters: {\n"
        f'  key: "{EXECUTION_ENV_KEY}"\n'
        f'  value: {{ string_value: "{model_env_value(model_name)}" }}\n'
        "}"
    )


def env_placements(model: ModelFolder, steps: list[RepositoryModel]) -> dict[str, list[str]]:
    """Which steps use the model's one env ("model") and which their own copy ("step")."""
    placements: dict[str, list[str]] = {"model": [], "step": []}
    for step in steps:
        value = str(step.config.parameters[EXECUTION_ENV_KEY].string_value)
        placement = env_placement(value, model.name)
        if placement is not None:
            placements[placement].append(step.name)
    return placements


def env_requirements(model: ModelFolder, target: ServingTarget) -> tuple[Path, str]:
    """The file the env is installed from and its text for the cache key: the model's lock for
    the target's Python when there is one (hash-pinned: the same env on every machine), else
    requirements.txt (normalised; resolved anew, so a warning says to lock it)."""

    lock = lock_path(model, target)
    requirements = normalized_requirements(model.requirements_file, model.name)
    if lock.is_file():
        text = lock.read_text(encoding="utf-8")
        if locked_digest(text) != requirements_digest(model):
            raise EnvPackError(
                f"{lock}: stale: it was not made from the current {model.requirements_file.name} "
                f"of model '{model.name}'; run `mmetools lock {model.path}` and commit the lock"
            )
        problem = lock_problem(text, target)
        if problem is not None:  # a lock edited by hand, or made before locks were checked
            raise EnvPackError(f"{lock}:{problem[0]}: model '{model.name}': {problem[1]}")
        return lock, text
    logger.warning(
        "%s: no %s; the env is resolved from %s and may differ between builds: run "
        "`mmetools lock %s`",
        model.name,
        lock.name,
        model.requirements_file.name,
        model.path,
    )
    return model.requirements_file, requirements


def pack_env(
    model: ModelFolder,
    settings: Settings,
    *,
    progress: Progress | None = None,
    backend: EnvBackend | None = None,
) -> PackedEnv | None:
    """Build (or reuse from the cache) the model's env for the serving target and copy it into
    every Python step. Returns None when the model has no Python steps.

    The steps' committed configs must already point EXECUTION_ENV_PATH at the env (checked
    before anything is built); no config is ever written.
    """

    def report(message: str) -> None:
        logger.info("%s: %s", model.name, message)
        if progress is not None:
            progress(message)

    steps = sorted(model.python_steps(), key=lambda step: step.name)
    if not steps:
        logger.info("%s: no Python steps, no env to pack", model.name)
        return None
    target = settings.target
    python_version = target.python_version
    source, requirements = env_requirements(model, target)
    chosen = backend if backend is not None else select_backend(settings)
    split = image_split(source, requirements, target, chosen)
    if split is not None and split.empty:
        provided = ", ".join(f"{n}=={v}" for n, v in split.provided)
        if not _configs_referencing_env(steps):
            # The image has every locked requirement at its locked version and no config asks
            # for an env: the steps run in the image's Python, no env is packed.
            _remove_stale_copies(model, steps)
            report(f"no env: the image provides every locked requirement ({provided})")
            return None
        # The configs ask for an env (as scaffolded: a requirement added later needs no config
        # edit): an empty one layered on the image, a few KB; dropping their block ships none.
        report(
            f"the image provides every locked requirement ({provided}): packing an empty env "
            f"layered on it, as the configs set {EXECUTION_ENV_KEY} (remove that block from "
            "them to ship no env at all)"
        )
    # Check every config before building anything: a bad value should not cost a 5-minute build.
    for step in steps:
        require_execution_env_path(step.config, step.config_path, step.name)
    if split is not None and split.layered:
        report(
            "left to the image (same version as locked): "
            + ", ".join(f"{n}=={v}" for n, v in split.provided)
        )
        requirements = split.packed_text
    for name, locked, image in split.differing if split is not None else ():
        report(f"packing {name}=={locked}: the image has {image}, the lock pins another version")
    layered_on = split.provided if split is not None else ()
    digest = env_hash(requirements, target, chosen, layered_on)
    cache_entry = settings.cache_dir / CACHE_SUBDIR / digest
    cached_archive = cache_entry / ENV_ARCHIVE
    remove_interrupted_builds(cache_entry.parent)  # also on a cache hit: a killed build's folder
    cached = cached_archive.is_file()
    if cached_archive.is_file() or cache_entry.exists():
        problem = entry_problem(cache_entry)
        if problem is not None:
            # Never used, never left for the next run: rebuilt from the requirements.
            logger.warning(
                "%s: env cache entry %s is damaged (%s): discarded, building it again",
                model.name,
                cache_entry,
                problem,
            )
            try:
                discard_entry(cache_entry)
            except OSError as e:
                raise EnvPackError(
                    f"model '{model.name}': env cache entry {cache_entry} is damaged ({problem}) "
                    f"and cannot be removed: {e.strerror or e}; remove it by hand"
                ) from e
            cached = False
    if cached:
        report(f"env {digest[:12]} found in the cache ({chosen.name}, Python {python_version})")
    else:
        report(f"building env {digest[:12]} ({chosen.name}, Python {python_version})")
        try:
            with tempfile.TemporaryDirectory(prefix="mmetools-env-") as folder:
                if layered_on:  # install what the image lacks, from the lock's own lines
                    source = Path(folder) / source.name
                    source.write_text(requirements, encoding="utf-8")
                build_into_cache(chosen, source, target, digest, cache_entry, model.name, report,
                                 layered=bool(layered_on))  # fmt: skip
        except OSError as e:
            raise EnvPackError(
                f"model '{model.name}': cannot store the env in the cache {cache_entry.parent}: "
                f"{e.strerror or e}"
            ) from e
    placed: list[Path] = []
    placements = env_placements(model, steps)
    destinations = [model.path / name / ENV_ARCHIVE for name in placements["step"]]
    shared = model.path / model_env_archive(model.name)
    if placements["model"]:
        destinations.append(shared)
    else:
        _remove_copy(shared)  # an earlier build's, which no config references now
    for destination in sorted(destinations):
        try:
            if place_copy(cached_archive, digest, destination, copy_record(destination)):
                report(f"copied the env to {destination.relative_to(model.path)}")
        except OSError as e:
            raise EnvPackError(
                f"model '{model.name}': cannot write {destination}: {e.strerror or e}"
            ) from e
        placed.append(destination)
    return PackedEnv(
        path=cached_archive,
        env_hash=digest,
        backend=chosen.name,
        python_version=python_version,
        cached=cached,
        steps=tuple(placed),
    )


def image_split(
    source: Path, requirements: str, target: ServingTarget, backend: EnvBackend
) -> LockSplit | None:
    """The lock divided by what the target image provides, or None when nothing may be left out:
    no lock (no exact versions), or conda-pack (its env carries its own interpreter and does not
    see the image's site-packages)."""
    if backend.name != "venv" or not source.name.endswith(".lock"):
        return None
    return split_lock(requirements, target)


def _remove_copy(destination: Path) -> None:
    destination.unlink(missing_ok=True)
    copy_record(destination).unlink(missing_ok=True)


def _remove_stale_copies(model: ModelFolder, steps: list[RepositoryModel]) -> None:
    """An env an earlier build copied is not shipped now: remove it and its record."""
    for step in steps:
        _remove_copy(step.path / ENV_ARCHIVE)
    _remove_copy(model.path / model_env_archive(model.name))


def _configs_referencing_env(steps: list[RepositoryModel]) -> list[str]:
    return [str(step.config_path) for step in steps if EXECUTION_ENV_KEY in step.config.parameters]


def prepare_env(
    model: ModelFolder,
    settings: Settings,
    *,
    with_env: bool = True,
    progress: Progress | None = None,
    backend: EnvBackend | None = None,
) -> PackedEnv | None:
    """Pack the model's env into its Python steps (cached); None when it ships without one
    (no Python steps, or ``with_env=False`` and no config points at an env)."""
    python_steps = model.python_steps()
    if with_env and python_steps:
        return pack_env(model, settings, progress=progress, backend=backend)
    referencing = _configs_referencing_env(python_steps)
    if referencing:
        raise ArtifactError(
            f"model '{model.name}': --no-env leaves {ENV_ARCHIVE} out, but these configs "
            f"set EXECUTION_ENV_PATH and would fail to load: {', '.join(referencing)}; "
            f"package with the env or remove the parameter"
        )
    return None
