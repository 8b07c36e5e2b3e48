"""Packed Python environments for a model's Python steps: ``<step>/python_env.tar.gz``.

Triton's python backend unpacks the archive named by the step's ``EXECUTION_ENV_PATH`` parameter
and runs the step with that env's packages. Envs are built for the serving target
(:mod:`mmetools.core.targets`): its Python minor version, its platform (wheels within its glibc) and its
interpreter path, from the model's lock for that Python (:mod:`mmetools.build.env.lock`), else its
requirements.txt. Two backends behind the ``EnvBackend`` interface:

- ``CondaPackBackend``: ``conda``/``mamba create --copy`` at the target's Python, requirements
  installed with pip (wheels only), packed by ``conda-pack``. The archive carries the interpreter.
- ``VenvPackBackend``: ``uv venv`` with a local Python of the target's minor version, ``uv pip
  install --python-platform <target manylinux>``, ``venv-pack --python-prefix <target prefix>``,
  then normalised into a reproducible archive. A venv does NOT carry its interpreter: the image's
  Python (``interpreter_path``) serves it, and ``mmetools test --artifact`` emulates that.

Built archives are cached under ``<cache_dir>/envs/<hash>/`` keyed by the lock (or normalised
requirements), the target's Python, interpreter path and platform, and the recipe; never by a
path of this machine. Each step then gets a copy (not a hard link: Triton refuses hard links).

Modules, lowest first: normalize (deterministic archives), backends (conda-pack, venv-pack),
requirements (normalised text, digest, cache key), lock (``mmetools lock``), cache (the env
cache and the steps' copies), pack (``pack_env`` and the pipeline's env step ``prepare_env``).
"""

from __future__ import annotations

from mmetools.build.env.backends import (
    CondaPackBackend,
    EnvBackend,
    Progress,
    VenvPackBackend,
    select_backend,
)
from mmetools.build.env.cache import (
    CACHE_RECORD,
    CACHE_SUBDIR,
    STEP_RECORD,
    build_into_cache,
    place_in_step,
)
from mmetools.build.env.lock import (
    LockResult,
    REQUIREMENTS_DIGEST,
    compile_lock,
    lock_model,
    lock_path,
    locked_digest,
)
from mmetools.build.env.normalize import (
    ENV_EXEC_MODE,
    ENV_FILE_MODE,
    normalize_env_archive,
)
from mmetools.build.env.pack import (
    PackedEnv,
    check_execution_env_path,
    env_requirements,
    pack_env,
    prepare_env,
    require_execution_env_path,
)
from mmetools.build.env.requirements import (
    RECIPE_VERSION,
    env_hash,
    normalized_requirements,
    requirements_digest,
)

__all__ = [
    "CACHE_RECORD",
    "CACHE_SUBDIR",
    "CondaPackBackend",
    "ENV_EXEC_MODE",
    "ENV_FILE_MODE",
    "EnvBackend",
    "LockResult",
    "PackedEnv",
    "Progress",
    "RECIPE_VERSION",
    "REQUIREMENTS_DIGEST",
    "STEP_RECORD",
    "VenvPackBackend",
    "build_into_cache",
    "check_execution_env_path",
    "compile_lock",
    "env_hash",
    "env_requirements",
    "lock_model",
    "lock_path",
    "locked_digest",
    "normalize_env_archive",
    "normalized_requirements",
    "pack_env",
    "place_in_step",
    "prepare_env",
    "require_execution_env_path",
    "requirements_digest",
    "select_backend",
]
