"""How each mode starts tritonserver: the mode choice, the server's arguments, and the command
line and environment for the bundled, native and docker modes."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from mmetools.core.errors import TritonError, UsageError
from mmetools.testing.serving_env import ServingEnv
from mmetools.testing.triton.backends import (
    BundledTriton,
    SITE_PACKAGES_VARIABLE,
    backend_site_packages,
    libpython_dir,
)

AUTO, BUNDLED, NATIVE, DOCKER = "auto", "bundled", "native", "docker"
MODES = (BUNDLED, NATIVE, DOCKER)
KSERVE, SAGEMAKER = "kserve", "sagemaker"
LOOPBACK = "127.0.0.1"
PORT_ATTEMPTS = 4

# ------------------------------------------------------------------------------------------------
# Modes and command lines (pure functions: unit-tested without a server)


def resolve_mode(
    setting: str, requested: str | None = None, image: str | None = None, which: Any = None
) -> str:
    """The server mode to use: ``--mode`` wins, ``--triton-image`` means docker, then the
    setting; ``auto`` is native when a ``tritonserver`` is on PATH, else bundled."""
    which = which or shutil.which
    choice = requested or (DOCKER if image else setting) or AUTO
    if choice not in (AUTO, *MODES):
        raise UsageError(f"unknown Triton mode '{choice}' (choose from {AUTO}, {', '.join(MODES)})")
    if choice == AUTO:
        return NATIVE if which("tritonserver") else BUNDLED
    return choice


@dataclass(frozen=True)
class Ports:
    """Host ports of a server; 0 means "that frontend is off"."""

    http: int = 0
    sagemaker: int = 0

    @property
    def main(self) -> int:
        return self.sagemaker or self.http


def server_arguments(
    repository: Path,
    *,
    frontend: str,
    ports: Ports,
    backend_directory: Path | None,
    address: str = LOOPBACK,
    shm_prefix: str = "",
    options: Sequence[str] = (),
) -> list[str]:
    """tritonserver's options: explicit model control, one HTTP frontend, nothing else open;
    then ``options`` as given (last, as the SageMaker image's `serve` appends
    SAGEMAKER_TRITON_ADDITIONAL_ARGS, e.g. ``--disable-auto-complete-config``)."""
    argv = [
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        "--exit-timeout-secs=5",
        "--allow-grpc=false",
        "--allow-metrics=false",
    ]
    if backend_directory is not None:
        argv.append(f"--backend-directory={backend_directory}")
    if shm_prefix:
        # Names this server's python-backend shared memory (all Python-based backends use it),
        # so a killed server's regions can be found and removed.
        argv.append(f"--backend-config=python,shm-region-prefix-name={shm_prefix}")
    if frontend == SAGEMAKER:
        # The SageMaker multi-model endpoint's view (server docker/sagemaker/serve).
        argv += [
            "--allow-http=false",
            "--allow-sagemaker=true",
            f"--sagemaker-port={ports.sagemaker}",
            "--model-namespacing=true",
        ]
    else:
        argv += [f"--http-port={ports.http}", f"--http-address={address}"]
    return [*argv, *options]


@dataclass(frozen=True)
class Launch:
    """What to execute: argv plus the variables layered over the current environment."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    container: str = ""  # docker container name, to stop it

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), **dict(self.env)}


def _path_with(prefix: Path | None, base: Mapping[str, str]) -> str:
    current = base.get("PATH", os.defpath)
    return f"{prefix / 'bin'}{os.pathsep}{current}" if prefix else current


def _frontend_env(frontend: str) -> list[tuple[str, str]]:
    return [("SAGEMAKER_MULTI_MODEL", "true")] if frontend == SAGEMAKER else []


@dataclass(frozen=True)
class TargetPython:
    """The serving image's Python, emulated: a local interpreter of the same minor version is
    mapped onto the image's prefix (an overlay on e.g. /usr, in a private mount namespace of the
    server only), so a packed env's ``bin/python -> /usr/bin/python3.12`` and ``home = /usr/bin``
    resolve as they would in the container, and the target's stub serves the env's steps.

    ``packages``: the packages the image installs for the python backend (numpy), laid out as
    ``lib/python3.X/site-packages`` and overlaid on top, so they are the emulated interpreter's
    own system site-packages, as the image's dist-packages are its Python's: an env layered on
    the image (include-system-site-packages) or a step with no env sees them, and nothing else."""

    local_prefix: Path  # holds bin/python3.X and lib/python3.X
    prefix: str  # the image's prefix, "/usr"
    version: str  # "3.12"
    packages: Path | None = None


# The server runs in its own user + mount namespace where the image's Python prefix is an overlay
# of the local interpreter's prefix over the host's: nothing outside that process tree changes.
_OVERLAY_SCRIPT = 'mount -t overlay overlay -o "lowerdir=$1" "$2" && shift 2 && exec "$@"'


def emulation_argv(argv: Sequence[str], python: TargetPython) -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise TritonError(
            "cannot emulate the target's Python: `unshare` (util-linux) is not on PATH; the "
            "static audit (`mmetools inspect`) still checks the env against the target"
        )
    layers = [str(python.local_prefix), python.prefix]
    if python.packages is not None:
        layers.insert(0, str(python.packages))
    return [unshare, "--map-root-user", "--mount", "sh", "-c", _OVERLAY_SCRIPT, "sh",
            ":".join(layers), python.prefix, *argv]  # fmt: skip


def bundled_launch(
    bundled: BundledTriton,
    backends: Path,
    repository: Path,
    *,
    frontend: str,
    ports: Ports,
    python_env: ServingEnv,
    shm_prefix: str = "",
    base_env: Mapping[str, str] | None = None,
    target_python: TargetPython | None = None,
    options: Sequence[str] = (),
) -> Launch:
    base = os.environ if base_env is None else base_env
    libraries = [str(bundled.libraries)]
    python_libraries = libpython_dir()
    if python_libraries is not None:
        libraries.append(str(python_libraries))
    if base.get("LD_LIBRARY_PATH"):
        libraries.append(base["LD_LIBRARY_PATH"])
    argv = [
        str(bundled.executable),
        *server_arguments(
            repository,
            frontend=frontend,
            ports=ports,
            backend_directory=backends,
            shm_prefix=shm_prefix,
            options=options,
        ),
    ]
    env = [
        ("LD_LIBRARY_PATH", os.pathsep.join(libraries)),
        ("PATH", _path_with(python_env.path, base)),
        (SITE_PACKAGES_VARIABLE, backend_site_packages()),
        *_frontend_env(frontend),
    ]
    if target_python is not None:
        from mmetools.testing import triton  # through the package: tests replace it there

        argv = triton.emulation_argv(argv, target_python)
    return Launch(tuple(argv), tuple(env))


def native_launch(
    executable: str,
    repository: Path,
    *,
    frontend: str,
    ports: Ports,
    python_env: ServingEnv | None,
    shm_prefix: str = "",
    base_env: Mapping[str, str] | None = None,
    options: Sequence[str] = (),
) -> Launch:
    """A tritonserver on PATH with its own (native) backends folder."""
    base = os.environ if base_env is None else base_env
    argv = [
        executable,
        *server_arguments(
            repository,
            frontend=frontend,
            ports=ports,
            backend_directory=None,
            shm_prefix=shm_prefix,
            options=options,
        ),
    ]
    env = [("PATH", _path_with(python_env.path if python_env else None, base))]
    return Launch(tuple(argv), tuple(env + _frontend_env(frontend)))


def docker_launch(
    image: str,
    repository: Path,
    *,
    frontend: str,
    ports: Ports,
    mounts: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    container: str,
    gpus: bool = True,
    requirements: Path | None = None,
    options: Sequence[str] = (),
) -> Launch:
    """``docker run`` of NVIDIA's Triton image. Folders are mounted at their host paths so the
    staged repository's symbolic links resolve inside the container; the frontend port is
    published on the host's loopback only. With ``requirements`` the Python steps' packages are
    pip-installed into the image's Python (the stub's) before the server starts."""
    argv = ["docker", "run", "--rm", "--name", container, "--init"]
    if gpus:
        argv += ["--gpus", "all"]
    # The python backend exchanges tensors through /dev/shm: docker's 64 MB default is too small.
    argv += ["--shm-size=1g", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864"]
    argv += ["-p", f"{LOOPBACK}:{ports.main}:{ports.main}"]
    for folder in writable:
        argv += ["-v", f"{folder}:{folder}"]
    for folder in mounts:
        argv += ["-v", f"{folder}:{folder}:ro"]
    if frontend == SAGEMAKER:
        argv += ["-e", "SAGEMAKER_MULTI_MODEL=true"]
    server = [
        "tritonserver",
        # inside the container the port is published from all its interfaces
        *server_arguments(
            repository,
            frontend=frontend,
            ports=ports,
            backend_directory=None,
            address="0.0.0.0",
            options=options,
        ),
    ]
    if requirements is not None:
        install = f'pip install --quiet --no-cache-dir -r {requirements} && exec "$@"'
        argv += [image, "sh", "-c", install, "sh", *server]
    else:
        argv += [image, *server]
    return Launch(tuple(argv), (), container)


def free_port() -> int:
    """A port the kernel says is free now. Another process may take it before Triton binds it;
    the server start detects that from the log and retries with new ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
