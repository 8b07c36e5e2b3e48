"""A model's requirements as the env cache sees them: normalised text, its digest, the cache key.

``normalized_requirements`` drops comments, blank lines and ordering (and refuses options whose
content lives elsewhere); ``requirements_digest`` is its sha256, recorded in a lock
(:mod:`mmetools.build.env.lock`); ``env_hash`` is the key of an env in the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from mmetools.build.env.backends import EnvBackend
from mmetools.core.errors import EnvPackError
from mmetools.core.targets import ServingTarget
from mmetools.model.folder import ModelFolder

logger = logging.getLogger(__name__)

# Bump when the build recipe changes in a way that changes the env: it invalidates every cache entry.
RECIPE_VERSION = 4  # 4: hash-based bytecode, slim rules, envs layered on the image
# pip requirement-file options whose content lives elsewhere: the cache hash could not see a change.
_UNHASHABLE_OPTIONS = re.compile(
    r"^(-r|--requirement|-c|--constraint|-e|--editable)(\s|=|$)", re.IGNORECASE
)
_COMMENT = re.compile(r"(^|\s)#.*$")


def normalized_requirements(path: Path, model_name: str) -> str:
    """requirements.txt without comments, blank lines or ordering, for the cache hash."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise EnvPackError(
            f"{path}: missing; model '{model_name}' has Python steps and their env is built "
            f"from this file (list at least numpy, which Triton's python backend imports)"
        ) from e
    except UnicodeDecodeError as e:
        raise EnvPackError(f"{path}: not UTF-8 text") from e
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = " ".join(_COMMENT.sub("", raw).split())
        if not line:
            continue
        if _UNHASHABLE_OPTIONS.match(line):
            raise EnvPackError(
                f"{path}:{number}: '{line}' is not supported in a model's requirements: list "
                f"the packages themselves (included files and editable installs cannot be "
                f"cached or packed)"
            )
        lines.append(line)
    return "".join(f"{line}\n" for line in sorted(lines))


def requirements_digest(model: ModelFolder) -> str:
    """sha256 of the normalised requirements.txt: a lock records the one it was made from."""
    text = normalized_requirements(model.requirements_file, model.name)
    return hashlib.sha256(text.encode()).hexdigest()


def env_hash(
    requirements: str,
    target: ServingTarget,
    backend: EnvBackend,
    layered_on: tuple[tuple[str, str], ...] = (),
) -> str:
    """The cache key: the (locked) requirements, what the target gives the env, and the recipe.

    Nothing of the build machine (not the local interpreter's path or patch version, not its
    glibc): the archive is built for the target and normalised, so it does not depend on them.
    """
    key = {
        "recipe": RECIPE_VERSION,
        "requirements": requirements,
        "python": target.python_version,
        "interpreter": target.interpreter_path,
        "platform": target.manylinux_platform,
        "backend": backend.identity(),
    }
    if layered_on:  # what the env leaves to the image (include-system-site-packages)
        key["layered_on"] = [f"{name}=={version}" for name, version in layered_on]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
