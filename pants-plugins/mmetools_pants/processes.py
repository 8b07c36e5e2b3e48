"""The hermetic model processes: how every process that runs mmetools on a model is made.

Their cache keys must be the same on every machine and checkout that would produce the same
bytes, and differ whenever the bytes could differ. So (docs/scaling.md) model processes (env,
test, package, check) hold no credentials, no HOME, no absolute path of the checkout or the
machine in their argv and environment. Paths are relative to the sandbox, or `{chroot}/...`,
which Pants substitutes after computing the key. Each runs one mmetools command as an argv list.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from pants.engine.fs import Digest
from pants.engine.process import Process, ProcessCacheScope
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from mmetools_pants.tool import SYSTEM_PATH, TOOL_BIN, MmetoolsTool

# MMETOOLS_CACHE_DIR of model processes: inside the sandbox, so what they read is in their key.
MODEL_CACHE_DIR = ".mmetools-cache"

# How long a model process waits for the remote cache's answer before it also starts locally.
# Pants' default (0) starts every process at once and cancels it on a hit: that is a Triton
# server started for nothing. A lookup takes milliseconds; a miss starts the process at once.
SPECULATION_DELAY_MS = 10_000

# Package downloads of uv and pip: append-only caches that only make installs faster.
PACKAGE_CACHES = {"mmetools_uv": ".uv-cache", "mmetools_pip": ".pip-cache"}


def hermetic_env(tool: MmetoolsTool, extra: Mapping[str, str] = FrozenDict()) -> dict[str, str]:
    """The environment of a model process: the same on every machine and checkout of one kind.
    Installing requirements (the packed env, the local test's serving env) needs the network
    settings; they are in the key."""
    return {
        **extra,
        **tool.network_env,
        **tool.model_env,
        "PATH": f"{{chroot}}/{TOOL_BIN}:{SYSTEM_PATH}",
        "MMETOOLS_CACHE_DIR": f"{{chroot}}/{MODEL_CACHE_DIR}",
        "UV_CACHE_DIR": "{chroot}/.uv-cache",
        "PIP_CACHE_DIR": "{chroot}/.pip-cache",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def model_caches(tool: MmetoolsTool) -> dict[str, str]:
    return {**tool.append_only_caches, **PACKAGE_CACHES}


def model_process(
    tool: MmetoolsTool,
    argv: tuple[str, ...],
    *,
    description: str,
    input_digest: Digest,
    timeout_seconds: int,
    extra_env: Mapping[str, str] = FrozenDict(),
    output_files: Iterable[str] = (),
    output_directories: Iterable[str] = (),
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL,
) -> Process:
    """A hermetic process of the mmetools environment on a model's inputs."""
    return Process(
        argv,
        description=description,
        input_digest=input_digest,
        env=hermetic_env(tool, extra_env),
        output_files=tuple(output_files),
        output_directories=tuple(output_directories),
        append_only_caches=model_caches(tool),
        timeout_seconds=timeout_seconds,
        level=LogLevel.DEBUG,
        cache_scope=cache_scope,
        remote_cache_speculation_delay_millis=SPECULATION_DELAY_MS,
    )
