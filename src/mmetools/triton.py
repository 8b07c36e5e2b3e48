"""A real Triton Inference Server for tests: launched, polled until ready, always stopped.

Three modes share one interface (:class:`TritonServer`):

- ``bundled``: the tritonserver inside the nvidia-pytriton wheel (CPU). Its build has only the
  python backend, so mmetools assembles a backends folder (cached) holding the python backend,
  the stub for the serving Python, and two *Python-based backends*, ``onnxruntime`` and
  ``pytorch`` (``src/mmetools/backends/``), which Triton picks for ``onnxruntime_onnx`` and
  ``pytorch_libtorch`` models. The model repository is served unmodified.
- ``native``: a ``tritonserver`` on PATH (NVIDIA's image) with its native backends and GPUs.
- ``docker``: NVIDIA's image run with ``docker run --gpus all``; the staged repository and the
  source folders it links to are mounted at the same paths.

The Python steps' stub takes ``sys.prefix`` from the first ``python3`` on PATH (it runs Python in
isolated mode, PYTHONPATH is ignored), so the serving environment's ``bin`` goes first on PATH.

Every server runs with explicit model control on an initially empty repository folder in its own
temporary work folder, on free loopback ports, logs to a file there, and is stopped (process
group terminated, then killed) by :meth:`TritonServer.stop`, the context manager, SIGTERM, or the
death of the Python process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import http.client
import importlib.util
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.errors import TritonError, UsageError
from mmetools.serving_env import ServingEnv, current_environment

logger = logging.getLogger(__name__)

AUTO, BUNDLED, NATIVE, DOCKER = "auto", "bundled", "native", "docker"
MODES = (BUNDLED, NATIVE, DOCKER)
KSERVE, SAGEMAKER = "kserve", "sagemaker"
LOOPBACK = "127.0.0.1"

BACKENDS_SOURCE = Path(__file__).parent / "backends"
PYTHON_BASED_BACKENDS = ("onnxruntime", "pytorch")
SITE_PACKAGES_VARIABLE = "MMETOOLS_BACKEND_SITE_PACKAGES"
STUB_NAME = "triton_python_backend_stub"
SHM_FOLDER = "/dev/shm"

# How long to wait before giving up. Loads can be long for big weights; infers should not be.
STARTUP_TIMEOUT = 120.0
LOAD_TIMEOUT = 600.0
INFER_TIMEOUT = 300.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
PORT_ATTEMPTS = 4

# Log lines the CPU-only bundled server always prints: they explain nothing.
_HARMLESS_LOG = re.compile(
    r"CUDA driver|CudaDriverHelper|NVML|DCGM|pinned memory|cuda_memory_manager|"
    r"unable to create stream|GPU metrics",
    re.IGNORECASE,
)
_ERROR_LOG = re.compile(r"^E\d{4} ")
_TROUBLE = re.compile(r"^W\d{4} |fail|error|exception|unavailable|unhealthy", re.IGNORECASE)
_TRAILING_QUOTE = re.compile(r'(\\n|[";\s])+$')
_PORT_IN_USE = re.compile(r"already in use|address in use|failed to start .*service", re.I)


# ------------------------------------------------------------------------------------------------
# Locating the bundled server and assembling its backends


@dataclass(frozen=True)
class BundledTriton:
    """The Triton build shipped in the nvidia-pytriton wheel."""

    executable: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stubs: Path  # python_backend_stubs/<major.minor>/triton_python_backend_stub
    libraries: Path  # nvidia_pytriton.libs

    def stub_for(self, python_version: str) -> Path:
        stub = self.stubs / python_version / STUB_NAME
        if not stub.is_file():
            available = sorted(p.parent.name for p in self.stubs.glob(f"*/{STUB_NAME}"))
            raise TritonError(
                f"the bundled Triton has no python backend stub for Python {python_version} "
                f"(it has {', '.join(available) or 'none'}); serve with that Python or use "
                "--mode native"
            )
        return stub


def find_bundled_triton() -> BundledTriton:
    """The tritonserver inside the installed nvidia-pytriton wheel; TritonError when absent."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonError(
            "nvidia-pytriton is not installed, so there is no bundled tritonserver "
            "(run ci/bootstrap, or use --mode native / --triton-image)"
        )
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    bundled = BundledTriton(
        executable=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stubs=root / "python_backend_stubs",
        libraries=package.parent / "nvidia_pytriton.libs",
    )
    for path in (bundled.executable, bundled.python_backend, bundled.libraries):
        if not path.exists():
            raise TritonError(f"the nvidia-pytriton installation is incomplete: {path} is missing")
    return bundled


def libpython_dir() -> Path | None:
    """Folder of this interpreter's libpython3.X.so.1.0, which the stub links against."""
    libdir = sysconfig.get_config_var("LIBDIR")
    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    if libdir and (Path(libdir) / name).exists():
        return Path(libdir)
    return None  # the system loader may still find it (Debian's libpython3.X package)


def _digest(paths: Iterable[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(str(path).encode())
        if path.name.endswith(".py"):
            digest.update(path.read_bytes())
        else:  # large binaries: their identity is enough
            status = path.stat()
            digest.update(f"{status.st_size}:{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def assemble_backends(bundled: BundledTriton, cache_dir: Path, python_version: str) -> Path:
    """A backends folder for the bundled server, built once per content and cached::

    python/{libtriton_python.so, triton_python_backend_utils.py, triton_python_backend_stub}
    onnxruntime/model.py, pytorch/model.py      (Python-based backends from mmetools)
    """
    stub = bundled.stub_for(python_version)
    sources = [
        *sorted(bundled.python_backend.iterdir()),
        stub,
        *(BACKENDS_SOURCE / name / "model.py" for name in PYTHON_BASED_BACKENDS),
    ]
    key = _digest(sources, python_version)
    parent = cache_dir / "triton-backends"
    destination = parent / f"py{python_version}-{key}"
    if destination.is_dir():
        return destination
    parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    try:
        (building / "python").mkdir()
        for source in bundled.python_backend.iterdir():
            shutil.copy2(source, building / "python" / source.name)
        shutil.copy2(stub, building / "python" / STUB_NAME)
        for name in PYTHON_BASED_BACKENDS:
            (building / name).mkdir()
            shutil.copy2(BACKENDS_SOURCE / name / "model.py", building / name / "model.py")
        try:
            os.replace(building, destination)
        except OSError:
            if not destination.is_dir():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    logger.debug("assembled Triton backends in %s", destination)
    return destination


def backend_site_packages() -> str:
    """Where this interpreter finds onnxruntime and torch, for the Python-based backends."""
    paths = sysconfig.get_paths()
    folders = dict.fromkeys([paths["purelib"], paths["platlib"]])
    return os.pathsep.join(folders)


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
) -> list[str]:
    """tritonserver's options: explicit model control, one HTTP frontend, nothing else open."""
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
    return argv


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
    resolve as they would in the container, and the target's stub serves the env's steps."""

    local_prefix: Path  # holds bin/python3.X and lib/python3.X
    prefix: str  # the image's prefix, "/usr"
    version: str  # "3.12"


# The server runs in its own user + mount namespace where the image's Python prefix is an overlay
# of the local interpreter's prefix over the host's: nothing outside that process tree changes.
_OVERLAY_SCRIPT = 'mount -t overlay overlay -o "lowerdir=$1:$2" "$2" && shift 2 && exec "$@"'


def emulation_argv(argv: Sequence[str], python: TargetPython) -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise TritonError(
            "cannot emulate the target's Python: `unshare` (util-linux) is not on PATH; the "
            "static audit (`mmetools inspect`) still checks the env against the target"
        )
    return [unshare, "--map-root-user", "--mount", "sh", "-c", _OVERLAY_SCRIPT, "sh",
            str(python.local_prefix), python.prefix, *argv]  # fmt: skip


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
        ),
    ]
    env = [
        ("LD_LIBRARY_PATH", os.pathsep.join(libraries)),
        ("PATH", _path_with(python_env.path, base)),
        (SITE_PACKAGES_VARIABLE, backend_site_packages()),
        *_frontend_env(frontend),
    ]
    if target_python is not None:
        argv = emulation_argv(argv, target_python)
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
            repository, frontend=frontend, ports=ports, backend_directory=None, address="0.0.0.0"
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


# ------------------------------------------------------------------------------------------------
# Process hygiene


def _kill_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Runs in the child before exec: the server gets SIGKILL when the Python process that
    started it dies for any reason, even SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


class _TerminateOnSigterm:
    """While a server runs, SIGTERM raises SystemExit in the main thread so the ``finally``
    blocks that stop servers run (the default SIGTERM action would just end the process)."""

    _lock = threading.Lock()
    _users = 0
    _previous: Any = None

    @classmethod
    def acquire(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    return  # someone (pytest, the user) already handles it
                cls._previous = signal.signal(signal.SIGTERM, cls._raise)
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        with cls._lock:
            if cls._users == 0:
                return
            cls._users -= 1
            if cls._users == 0:
                signal.signal(signal.SIGTERM, cls._previous or signal.SIG_DFL)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------------
# The server


def _expand_tracebacks(lines: Iterable[str]) -> list[str]:
    """Triton quotes multi-line messages (Python tracebacks) with escaped newlines: show them as
    lines, each traceback once (the ensemble's error repeats its step's)."""
    result: list[str] = []
    seen: set[str] = set()
    for line in lines:
        head, _, tail = line.partition("\\n")
        result.append(head if tail else line)
        key = _TRAILING_QUOTE.sub("", tail)
        if tail and key not in seen:
            seen.add(key)
            result.extend(f"    {part}" for part in tail.split("\\n") if part.strip(' ";'))
    return result


def _first_paragraph(text: str) -> str:
    """Triton appends the Python traceback after a blank line; the log excerpt shows it."""
    return text.split("\n\n", 1)[0].strip()


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def error_text(self) -> str:
        try:
            document = self.json()
        except (ValueError, UnicodeDecodeError):
            document = None
        if isinstance(document, dict) and "error" in document:
            return str(document["error"])
        return self.body.decode("utf-8", "replace").strip() or f"HTTP {self.status}"


@dataclass(frozen=True)
class LoadResult:
    seconds: float | None
    error: str | None = None
    log_lines: tuple[str, ...] = ()

    def seconds_or_raise(self) -> float:
        if self.seconds is None:
            log = "\nTriton log:\n" + "\n".join(self.log_lines) if self.log_lines else ""
            raise TritonError(f"{self.error}{log}")
        return self.seconds


_SERVER_NUMBERS = itertools.count(1)


class TritonServer:
    """One tritonserver process in explicit model-control mode.

    ``with TritonServer(...) as server:`` starts it and always stops it. Models are put into
    ``server.repository`` (see :mod:`mmetools.harness`) and loaded with :meth:`load`.
    """

    def __init__(
        self,
        *,
        mode: str = BUNDLED,
        frontend: str = KSERVE,
        python_env: ServingEnv | None = None,
        cache_dir: Path | None = None,
        image: str = "",
        mounts: Sequence[Path] = (),
        requirements: Path | None = None,
        gpus: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
        target_python: TargetPython | None = None,
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown Triton mode '{mode}' (choose from {', '.join(MODES)})")
        if mode == DOCKER and not image:
            raise UsageError("docker mode needs an image (--triton-image)")
        self.mode = mode
        self.frontend = frontend
        self.python_env = python_env or current_environment()
        if cache_dir is None:
            from mmetools.settings import load_settings

            cache_dir = load_settings().cache_dir
        self.cache_dir = cache_dir
        self.image = image
        self.mounts = tuple(mounts)
        self.requirements = requirements
        self.gpus = gpus
        self.startup_timeout = startup_timeout
        self.target_python = target_python
        self.workdir: Path | None = None
        self.ports = Ports()
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._launch: Launch | None = None
        self._log_file: Any = None
        self._client: Any = None
        self._signals_held = False
        self._attempt_offset = 0
        self.shm_prefix = f"mmetools_{os.getpid()}_{next(_SERVER_NUMBERS)}_"

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def repository(self) -> Path:
        return self._require_workdir() / "repository"

    @property
    def log_path(self) -> Path:
        return self._require_workdir() / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.main}"

    @property
    def url(self) -> str:
        """host:port of the KServe HTTP frontend, as tritonclient takes it."""
        return f"{LOOPBACK}:{self.ports.http}"

    def _require_workdir(self) -> Path:
        if self.workdir is None:
            raise TritonError("the Triton server is not started")
        return self.workdir

    def start(self) -> TritonServer:
        """Start the server and wait until it answers ready; TritonError with the log's
        relevant lines when it does not."""
        if self._process is not None:
            return self
        _TerminateOnSigterm.acquire()
        self._signals_held = True
        begin = time.perf_counter()
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix="mmetools-triton-"))
            self.repository.mkdir()
            for attempt in range(1, PORT_ATTEMPTS + 1):
                self.ports = self._pick_ports()
                self._spawn()
                if self._wait_ready():
                    break
                if attempt == PORT_ATTEMPTS:
                    raise TritonError(
                        f"Triton could not bind a free port after {PORT_ATTEMPTS} attempts:\n"
                        + "\n".join(self.log_excerpt())
                    )
                logger.debug("port taken before Triton bound it; retrying with new ports")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - begin
        logger.info(
            "Triton (%s, %s) ready on %s in %.2f s",
            self.mode,
            self.frontend,
            self.base_url,
            self.start_seconds,
        )
        return self

    def _pick_ports(self) -> Ports:
        port = free_port()
        return Ports(sagemaker=port) if self.frontend == SAGEMAKER else Ports(http=port)

    def _make_launch(self) -> Launch:
        repository = self.repository
        if self.mode == BUNDLED:
            bundled = find_bundled_triton()
            backends = assemble_backends(bundled, self.cache_dir, self.python_env.python_version)
            return bundled_launch(
                bundled,
                backends,
                repository,
                frontend=self.frontend,
                ports=self.ports,
                python_env=self.python_env,
                shm_prefix=self.shm_prefix,
                target_python=self.target_python,
            )
        if self.mode == NATIVE:
            executable = shutil.which("tritonserver")
            if executable is None:
                raise TritonError("native mode needs a `tritonserver` on PATH (NVIDIA's image)")
            return native_launch(
                executable,
                repository,
                frontend=self.frontend,
                ports=self.ports,
                python_env=self.python_env,
                shm_prefix=self.shm_prefix,
            )
        if shutil.which("docker") is None:
            raise TritonError("docker mode needs the `docker` command (and a running engine)")
        return docker_launch(
            self.image,
            repository,
            frontend=self.frontend,
            ports=self.ports,
            mounts=self.mounts,
            writable=[self._require_workdir()],
            container=f"mmetools-triton-{os.getpid()}-{self._require_workdir().name[-8:]}",
            gpus=self.gpus,
            requirements=self.requirements,
        )

    def _spawn(self) -> None:
        self._launch = self._make_launch()
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._attempt_offset = self.log_offset()
        logger.debug("starting %s", " ".join(self._launch.argv))
        # Files the server's libraries leave in TMPDIR (onnxruntime writes a .ses file) go to
        # the work folder, which stop() removes.
        temporary = self._require_workdir() / "tmp"
        temporary.mkdir(exist_ok=True)
        environment = {**self._launch.environment(), "TMPDIR": str(temporary)}
        self._process = subprocess.Popen(
            list(self._launch.argv),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._require_workdir(),
            # its own process group: stop() ends the server and its stub processes together,
            # and Ctrl-C in the terminal reaches only us, so we shut it down in order
            start_new_session=True,
            preexec_fn=_kill_with_parent,
        )

    def _wait_ready(self) -> bool:
        """True when ready; False when it exited because a port was taken (retry)."""
        path = "/ping" if self.frontend == SAGEMAKER else "/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout
        process = self._process
        assert process is not None
        while True:
            if process.poll() is not None:
                if _PORT_IN_USE.search(self._read_log(self._attempt_offset)):
                    self._reap()
                    return False
                raise TritonError(
                    f"tritonserver {self.exit_description()} during start-up:\n"
                    + "\n".join(self.log_excerpt(since=self._attempt_offset))
                )
            try:
                if self.request("GET", path, timeout=2.0).status == 200:
                    return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TritonError(
                    f"tritonserver was not ready within {self.startup_timeout:.0f} s:\n"
                    + "\n".join(self.log_excerpt())
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=POLL_INTERVAL)  # returns at once if it exits

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def died(self, grace: float = 5.0) -> bool:
        """After a failed request: has the server gone? A killed server's connections break
        before the kernel reports its exit, so an unanswered liveness probe waits (bounded) for
        the exit instead of trusting a poll() that may still say "running"."""
        if not self.alive():
            return True
        path = "/ping" if self.frontend == SAGEMAKER else "/v2/health/live"
        try:
            if self.request("GET", path, timeout=2.0).status == 200:
                return False
        except OSError:
            pass
        assert self._process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=grace)
        return not self.alive()

    def exit_description(self) -> str:
        code = self._process.poll() if self._process else None
        if code is None:
            return "is running"
        if code < 0:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        return f"exited with code {code}"

    def stop(self) -> None:
        """Stop the server and its stub processes, then delete the work folder. Idempotent."""
        try:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None
            self._reap()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            if self._signals_held:
                self._signals_held = False
                _TerminateOnSigterm.release()

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        launch = self._launch
        if launch is not None and launch.container:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["docker", "stop", "--time", "10", launch.container],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=STOP_TIMEOUT,
                    check=False,
                )
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver did not stop in %.0f s; killing it", STOP_TIMEOUT)
        # Whatever is left of the group (stub processes, a hung server) is killed, and the
        # shared-memory regions a killed python backend could not remove are removed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for region in Path(SHM_FOLDER).glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    # -- the log --------------------------------------------------------------------------------

    def _read_log(self, since: int = 0) -> str:
        if self.workdir is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace")

    def log_offset(self) -> int:
        """Current end of the log; pass it to :meth:`log_excerpt` to see only what follows."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_excerpt(self, names: Iterable[str] = (), since: int = 0, limit: int = 40) -> list[str]:
        """The log lines that explain a problem: error lines and lines naming one of ``names``
        (models, steps), plus Python tracebacks printed by stub processes; never the banner."""
        wanted = [n for n in names if n]
        lines = self._read_log(since).splitlines()
        picked: list[str] = []
        in_traceback = False
        for line in lines:
            if line.startswith("Traceback (most recent call last)"):
                in_traceback = True
            if in_traceback:
                picked.append(line)
                if line and not line.startswith((" ", "Traceback")):
                    in_traceback = False  # the exception line ends the traceback
                continue
            if _HARMLESS_LOG.search(line) or line.startswith(("+", "|")):
                continue
            if _ERROR_LOG.match(line) or (
                _TROUBLE.search(line) and any(name in line for name in wanted)
            ):
                picked.append(line)
        unique = _expand_tracebacks(dict.fromkeys(picked))
        if len(unique) > limit:
            unique = [f"... {len(unique) - limit} earlier lines omitted", *unique[-limit:]]
        return unique

    # -- HTTP -----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = INFER_TIMEOUT,
    ) -> HttpResponse:
        """One HTTP request to the server's frontend. Error statuses are returned, not raised;
        OSError when the connection fails."""
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return HttpResponse(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, e.read(), dict(e.headers))
        except http.client.HTTPException as e:  # the server dropped the connection
            raise ConnectionError(str(e)) from e

    def _died(self, doing: str, names: Iterable[str] = (), since: int = 0) -> TritonError:
        return TritonError(
            f"tritonserver {self.exit_description()} while {doing}:\n"
            + "\n".join(self.log_excerpt(names, since))
        )

    def try_load(self, name: str, log_names: Iterable[str] = ()) -> LoadResult:
        """Load a model (an ensemble loads its steps). On failure the result carries Triton's
        message and the log lines about ``name`` and ``log_names``."""
        names = [name, *log_names]
        since = self.log_offset()
        begin = time.perf_counter()
        try:
            response = self.request(
                "POST", f"/v2/repository/models/{name}/load", b"{}", timeout=LOAD_TIMEOUT
            )
        except OSError as e:
            if not self.died():
                return LoadResult(None, f"loading '{name}': no answer from Triton: {e}")
            return LoadResult(
                None,
                f"tritonserver {self.exit_description()} while loading '{name}'",
                tuple(self.log_excerpt(names, since)),
            )
        seconds = time.perf_counter() - begin
        if response.status != 200:
            return LoadResult(
                None,
                f"Triton could not load '{name}': {_first_paragraph(response.error_text())}",
                tuple(self.log_excerpt(names, since)),
            )
        logger.info("loaded %s in %.2f s", name, seconds)
        return LoadResult(seconds)

    def load(self, name: str, log_names: Iterable[str] = ()) -> float:
        """Load a model; returns the seconds it took; TritonError with the log lines when not."""
        return self.try_load(name, log_names).seconds_or_raise()

    def unload(self, name: str, dependents: bool = True) -> None:
        """Unload a model and, for an ensemble, the steps it loaded. Triton finishes in the
        background; a dead server has nothing left to unload."""
        if not self.alive():
            return
        body = json.dumps({"parameters": {"unload_dependents": dependents}}).encode()
        with contextlib.suppress(OSError):
            response = self.request("POST", f"/v2/repository/models/{name}/unload", body)
            if response.status != 200:
                logger.warning("Triton could not unload %s: %s", name, response.error_text())

    def _tritonclient(self) -> Any:
        if self._client is None:
            import tritonclient.http as httpclient

            self._client = httpclient.InferenceServerClient(
                self.url, connection_timeout=30.0, network_timeout=INFER_TIMEOUT
            )
        return self._client

    def infer(
        self,
        model: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str] | None = None,
        datatypes: Mapping[str, str] | None = None,
    ) -> dict[str, npt.NDArray[Any]]:
        """Run ``model`` once through the KServe HTTP frontend (binary tensors). ``outputs``
        defaults to every output the model declares; datatypes default from the arrays."""
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        from mmetools.fixtures import datatype_of_array

        client = self._tritonclient()
        try:
            if outputs is None:
                metadata = client.get_model_metadata(model)
                outputs = [str(o["name"]) for o in metadata["outputs"]]
            request_inputs = []
            for name, value in inputs.items():
                array = np.asarray(value)
                datatype = (datatypes or {}).get(name) or datatype_of_array(array)
                if datatype is None:
                    raise TritonError(
                        f"{model}: input '{name}' has unsupported dtype {array.dtype}"
                    )
                if datatype == "BYTES" and array.dtype.kind != "O":
                    array = array.astype(np.object_)
                tensor = httpclient.InferInput(name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array, binary_data=True)
                request_inputs.append(tensor)
            requested = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs]
            result = client.infer(model, request_inputs, outputs=requested)
        except InferenceServerException as e:
            if self.died():
                raise self._died(f"running '{model}'", [model]) from e
            raise TritonError(f"{model}: inference failed: {e.message()}") from e
        except TritonError:
            raise
        except Exception as e:  # the HTTP client's connection errors have no common base
            self._client = None  # its connection is broken
            if self.died():
                raise self._died(f"running '{model}'", [model]) from e
            raise TritonError(f"{model}: inference failed: {type(e).__name__}: {e}") from e
        return {name: result.as_numpy(name) for name in outputs}


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[TritonServer]:
    """``with running_server(mode=..., python_env=...) as server:`` (always stopped)."""
    server = TritonServer(**options)
    with server:
        yield server
