"""The mmetools environment as the plugin's processes see it, and its content key.

- The environment (ci/bootstrap's .venv) is reached through an append-only named cache whose
  *name* is its content identity (uv.lock, pyproject.toml, ci/bootstrap with the torch pin, and
  every installed distribution's version: torch, nvidia-pytriton's Triton, ...). An uncached link
  process points `<cache>/venv` at this checkout's environment; the identity also goes into the
  sandbox as a file (see inputs.py), since Pants leaves append-only caches out of the key.
- Its path is in no cache key: only the uncached processes that run in the workspace (fetch,
  publish) name it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import DigestContents, GlobMatchErrorBehavior, PathGlobs
from pants.engine.process import Process, ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from mmetools_pants.subsystem import MmetoolsSubsystem

# Where model processes see the mmetools environment: <TOOL_MOUNT> is the named cache, whose
# `venv` entry the link process points at the checkout's environment.
TOOL_MOUNT = ".mmetools-tool"
TOOL_BIN = f"{TOOL_MOUNT}/venv/bin"
# The system tools model processes may start (sh, tar, ...), after the environment's own bin.
SYSTEM_PATH = "/usr/bin:/bin"
# The files that define the mmetools environment (ci/bootstrap holds the torch pin).
TOOL_DEFINITION_FILES = ("pyproject.toml", "uv.lock", "ci/bootstrap")

# Prints what identifies the environment beyond its definition files: the interpreter and every
# installed distribution (torch from its pin, nvidia-pytriton's bundled Triton, ...).
PROBE_SCRIPT = """\
import importlib.metadata as m, json, platform, sys
dists = sorted({(d.metadata["Name"] or "?").lower(): d.version for d in m.distributions()}.items())
print(json.dumps({"python": platform.python_version(), "implementation": sys.implementation.name,
                  "machine": platform.machine(), "distributions": dists}, sort_keys=True))
"""
# Points <named cache>/venv at the environment, atomically (another session may be using it).
LINK_SCRIPT = (
    f'ln -sfn "$1" {TOOL_MOUNT}/.venv.$$ && mv -Tf {TOOL_MOUNT}/.venv.$$ {TOOL_MOUNT}/venv'
)


def letters(hex_digest: str) -> str:
    """Pants 2.17 accepts only lowercase letters and underscores in cache names (digits are
    refused, whatever its message says), so hex digits become letters."""
    return hex_digest.translate(str.maketrans("0123456789", "ghijklmnop"))


@dataclass(frozen=True)
class MmetoolsTool:
    """The mmetools environment, and the environments of the processes that run it."""

    venv: str  # absolute: only for the uncached processes that run in the workspace
    identity: str  # sha256 of the environment's definition and installed content
    model_env: FrozenDict[str, str]
    network_env: FrozenDict[str, str]
    workspace_env: FrozenDict[str, str]
    build_root: str

    @property
    def cache_name(self) -> str:
        return "mmetools_tool_" + letters(self.identity[:24])

    @property
    def append_only_caches(self) -> FrozenDict[str, str]:
        return FrozenDict({self.cache_name: TOOL_MOUNT})

    def workspace_bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)


@rule(desc="Identify the mmetools environment", level=LogLevel.DEBUG)
async def find_mmetools(mmetools: MmetoolsSubsystem, build_root: BuildRoot) -> MmetoolsTool:
    venv = os.path.normpath(os.path.join(build_root.path, mmetools.venv))
    if not os.path.isfile(os.path.join(venv, "bin", "mmetools")):
        raise ValueError(
            f"[mmetools].venv: {venv} holds no bin/mmetools. Create the repository's environment "
            "with `ci/bootstrap` first (./pants does when .venv is missing), or point the option "
            "at one."
        )
    model_vars, network_vars, workspace_vars, definition = await MultiGet(
        Get(EnvironmentVars, EnvironmentVarsRequest(mmetools.env_vars)),
        Get(EnvironmentVars, EnvironmentVarsRequest(mmetools.network_env_vars)),
        Get(
            EnvironmentVars,
            EnvironmentVarsRequest(["PATH", "HOME", *mmetools.workspace_env_vars]),
        ),
        Get(
            DigestContents,
            PathGlobs(
                TOOL_DEFINITION_FILES,
                glob_match_error_behavior=GlobMatchErrorBehavior.warn,
                description_of_origin="the mmetools environment's definition ([mmetools])",
            ),
        ),
    )
    # Uncached: what is installed can change under the same uv.lock (torch is pip-installed).
    probe = await Get(
        ProcessResult,
        Process(
            (os.path.join(venv, "bin", "python"), "-I", "-c", PROBE_SCRIPT),
            description="Probe the mmetools environment's content",
            env={**model_vars, "PATH": SYSTEM_PATH},
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    identity = hashlib.sha256()
    for content in sorted(definition, key=lambda c: c.path):
        identity.update(f"{content.path}\0{len(content.content)}\0".encode() + content.content)
    identity.update(probe.stdout)
    tool = MmetoolsTool(
        venv=venv,
        identity=identity.hexdigest(),
        model_env=FrozenDict(model_vars),
        network_env=FrozenDict(network_vars),
        workspace_env=FrozenDict(workspace_vars),
        build_root=build_root.path,
    )
    await Get(
        ProcessResult,
        Process(
            ("/bin/sh", "-c", LINK_SCRIPT, "sh", venv),
            description="Link the mmetools environment into its named cache",
            env={"PATH": SYSTEM_PATH},
            append_only_caches=tool.append_only_caches,
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    return tool


def rules() -> tuple[object, ...]:
    return (*collect_rules(),)
