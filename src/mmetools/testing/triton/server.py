"""One tritonserver process: started on free loopback ports, polled until ready, models loaded,
requests sent (KServe v2 over HTTP, or the SageMaker frontend), always stopped."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy.typing as npt

from mmetools.core.errors import TritonError, UsageError
from mmetools.testing.serving_env import ServingEnv, current_environment
from mmetools.testing.triton.backends import assemble_backends, find_bundled_triton
from mmetools.testing.triton.client import (
    HttpResponse,
    LoadResult,
    infer_inputs,
    output_arrays,
    requested_outputs,
    send_request,
)
from mmetools.testing.triton.launch import (
    BUNDLED,
    DOCKER,
    KSERVE,
    LOOPBACK,
    Launch,
    MODES,
    NATIVE,
    PORT_ATTEMPTS,
    Ports,
    SAGEMAKER,
    TargetPython,
    bundled_launch,
    docker_launch,
    free_port,
    native_launch,
)
from mmetools.testing.triton.lifecycle import (
    Watchdog,
    _TerminateOnSigterm,
    _kill_with_parent,
    new_workdir,
    record_owner,
    remove_dead_runs,
    stop_process_group,
)
from mmetools.testing.triton.logs import _PORT_IN_USE, _first_paragraph, log_excerpt
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

# How long to wait before giving up. Loads can be long for big weights; infers should not be.
STARTUP_TIMEOUT = 120.0
LOAD_TIMEOUT = 600.0
INFER_TIMEOUT = 300.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.05

_SERVER_NUMBERS = itertools.count(1)


class TritonServer:
    """One tritonserver process in explicit model-control mode.

    ``with TritonServer(...) as server:`` starts it and always stops it. Models are put into
    ``server.repository`` (see :mod:`mmetools.testing.source_test`) and loaded with :meth:`load`.
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
        options: Sequence[str] = (),
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"unknown Triton mode '{mode}' (choose from {', '.join(MODES)})")
        if mode == DOCKER and not image:
            raise UsageError("docker mode needs an image (--triton-image)")
        self.mode = mode
        self.frontend = frontend
        self.python_env = python_env or current_environment()
        if cache_dir is None:
            from mmetools.core.settings import load_settings

            cache_dir = load_settings().cache_dir
        self.cache_dir = cache_dir
        self.image = image
        self.mounts = tuple(mounts)
        self.requirements = requirements
        self.gpus = gpus
        self.startup_timeout = startup_timeout
        self.target_python = target_python
        self.options = tuple(options)  # more tritonserver options, appended as given
        self.workdir: Path | None = None
        self.ports = Ports()
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._launch: Launch | None = None
        self._log_file: Any = None
        self._client: Any = None
        self._signals_held = False
        self._watchdog: Watchdog | None = None
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
            remove_dead_runs()  # what servers of killed mmetools processes left
            self.workdir = new_workdir()
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
                options=self.options,
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
                options=self.options,
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
            options=self.options,
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
        # The server's children (stubs) are not covered by PR_SET_PDEATHSIG: the watchdog
        # kills the whole group if we die; the record lets the next start do it otherwise.
        self._watchdog = Watchdog(self._process.pid, self._launch.container, self.shm_prefix)
        record_owner(self._require_workdir(), self._process.pid, self.shm_prefix)

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
                remove_tree(self.workdir, ignore_errors=True)
                self.workdir = None
            if self._signals_held:
                self._signals_held = False
                _TerminateOnSigterm.release()

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            container = self._launch.container if self._launch is not None else ""
            stop_process_group(process, container, self.shm_prefix, STOP_TIMEOUT)
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None

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
        """The log lines that explain a problem (see :func:`logs.log_excerpt`)."""
        return log_excerpt(self._read_log(since), names, limit)

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
        return send_request(self.base_url + path, method, body, headers, timeout)

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
        from tritonclient.utils import InferenceServerException

        client = self._tritonclient()
        try:
            if outputs is None:
                metadata = client.get_model_metadata(model)
                outputs = [str(o["name"]) for o in metadata["outputs"]]
            request_inputs = infer_inputs(model, inputs, datatypes)
            result = client.infer(model, request_inputs, outputs=requested_outputs(outputs))
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
        return output_arrays(result, outputs, model)


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[TritonServer]:
    """``with running_server(mode=..., python_env=...) as server:`` (always stopped)."""
    server = TritonServer(**options)
    with server:
        yield server
