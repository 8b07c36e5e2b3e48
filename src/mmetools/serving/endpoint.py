"""``mmetools endpoint serve``: a SageMaker multi-model endpoint on one machine.

The pieces: the runtime API (:mod:`.runtime_api`, werkzeug's threaded server on loopback), the
model cache (:mod:`.cache`: LRU under the memory budget, single-flight loads), the model server
(:mod:`.triton_backend`: one Triton with its SageMaker frontend) and the metrics
(:mod:`.metrics`). The model budget is the instance memory minus what Triton takes with no model
loaded (measured at start), unless ``model_budget_bytes`` says otherwise.

Robustness: at most ``max_concurrent`` invocations are in progress, the others are refused at
once (503 ServiceUnavailable); a request waits at most ``wait_seconds`` for a load (then 429
ModelNotReadyException, the load goes on); Triton is watched every second and restarted when it
dies (its models load again on demand); :meth:`LocalEndpoint.stop` stops the HTTP server, unloads,
stops Triton and removes every temporary folder.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mmetools.core.settings import Settings
from mmetools.serving.cache import (
    Busy,
    CacheError,
    LoadFailed,
    Loader,
    ModelCache,
    ModelMissing,
    NotReady,
)
from mmetools.serving.metrics import EndpointMetrics
from mmetools.serving.runtime_api import (
    ApiError,
    Invocation,
    RuntimeApi,
    model_error,
    validation_error,
)
from mmetools.serving.source import ArtifactSource, target_model_problem
from mmetools.testing.triton import LOOPBACK, HttpResponse
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

GiB = 1024**3
WATCH_INTERVAL = 1.0


class ModelServer(Loader, Protocol):
    """What the endpoint needs of its model server (the real one: TritonBackend)."""

    on_death: Callable[[], None]
    baseline_bytes: int

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def restart(self) -> None: ...

    def alive(self) -> bool: ...

    def memory_bytes(self) -> int: ...

    def invoke(self, handle: Any, body: bytes, content_type: str, accept: str) -> HttpResponse: ...


class ServerGone(Exception):
    """Raised by a model server's invoke when the server died (ModelServerDied for Triton)."""


@dataclass(frozen=True)
class EndpointOptions:
    instance_memory_gib: float = 16.0
    port: int = 0
    model_budget_bytes: int | None = None  # default: instance memory - Triton's own
    wait_seconds: float = 60.0
    max_pending_loads: int = 32
    max_concurrent: int = 64
    default_estimate_bytes: int = 256 * 1024 * 1024


class LocalEndpoint:
    def __init__(
        self, model_server: ModelServer, options: EndpointOptions, source_uri: str
    ) -> None:
        self.model_server = model_server
        self.options = options
        self.source_uri = source_uri
        self.instance_bytes = int(options.instance_memory_gib * GiB)
        self.metrics = EndpointMetrics(self.instance_bytes)
        self.cache: ModelCache | None = None
        self._admission = threading.BoundedSemaphore(options.max_concurrent)
        self._http: Any = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._restart_lock = threading.Lock()
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LocalEndpoint:
        from werkzeug.serving import make_server

        try:
            self.model_server.on_death = self._model_server_died
            self.model_server.start()
            budget = self.options.model_budget_bytes
            if budget is None:
                budget = self.instance_bytes - self.model_server.baseline_bytes
            if budget <= 0:
                from mmetools.core.errors import UsageError

                raise UsageError(
                    f"--instance-memory {self.options.instance_memory_gib:g} GiB leaves no room "
                    f"for models: Triton alone takes {self.model_server.baseline_bytes / GiB:.2f} GiB"
                )
            self.cache = ModelCache(
                self.model_server,
                budget,
                wait_seconds=self.options.wait_seconds,
                max_pending_loads=self.options.max_pending_loads,
                default_estimate_bytes=self.options.default_estimate_bytes,
                events=self.metrics,
            )
            cache = self.cache
            self.metrics = EndpointMetrics(
                self.instance_bytes,
                memory_sample=self.model_server.memory_bytes,
                loaded_count=lambda: len(cache.loaded()),
                accounted_bytes=cache.used_bytes,
            )
            cache.events = self.metrics
            self._http = make_server(LOOPBACK, self.options.port, RuntimeApi(self), threaded=True)
            self.url = f"http://{LOOPBACK}:{self._http.server_port}"
            self._spawn(self._http.serve_forever, "runtime-api")
            self._spawn(self._watch, "model-server-watch")
        except BaseException:
            self.stop()
            raise
        logger.info("endpoint serving %s on %s, model budget %d MiB", self.source_uri, self.url,
                    budget // 2**20)  # fmt: skip
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def ready(self) -> bool:
        return self.cache is not None and not self._stopping.is_set() and self.model_server.alive()

    def stop(self) -> None:
        """Stop serving, unload, stop the model server. Idempotent."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self.cache is not None:
            self.cache.close(unload=False)  # stopping Triton unloads everything at once
        self.model_server.stop()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the model server's health --------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            if not self.model_server.alive():
                self._model_server_died()

    def _model_server_died(self) -> None:
        """Forget every model and start a new model server (once, however many noticed)."""
        with self._restart_lock:
            if self._stopping.is_set() or self.model_server.alive():
                return
            lost = self.cache.forget_all() if self.cache is not None else 0
            logger.warning("the model server died with %d models loaded: restarting it", lost)
            try:
                self.model_server.restart()
            except Exception as e:  # try again at the next watch
                logger.error("restarting the model server failed: %s", e)
                return
            self.metrics.restarted()

    # -- invocations ----------------------------------------------------------------------------

    def invoke(
        self, endpoint_name: str, target_model: str, body: bytes, content_type: str, accept: str
    ) -> Invocation:
        if not target_model:
            self.metrics.refused("ValidationError")
            raise validation_error(
                f"Endpoint {endpoint_name} is a multi-model endpoint: the request needs a "
                "TargetModel (header X-Amzn-SageMaker-Target-Model)"
            )
        problem = target_model_problem(target_model)
        if problem is not None:
            self.metrics.refused("ValidationError")
            raise validation_error(f"TargetModel {target_model!r}: {problem}")
        if not self._admission.acquire(blocking=False):
            self.metrics.refused("ServiceUnavailable")
            raise ApiError(
                503,
                "ServiceUnavailable",
                f"{self.options.max_concurrent} invocations are already in progress; retry",
            )
        begin = time.perf_counter()
        hit, code = False, ""
        try:
            cache = self.cache
            if cache is None or self._stopping.is_set():
                code = "ServiceUnavailable"
                raise ApiError(503, code, "the endpoint is stopping")
            try:
                lease = cache.acquire(target_model)
            except CacheError as e:
                error = _cache_error(e)
                code = error.code
                raise error from e
            hit = lease.state == "hit"
            try:
                response = self._forward(lease.handle, body, content_type, accept)
            finally:
                cache.release(lease)
            if response.status != 200:
                error = model_error(response.status, response.error_text())
                code = error.code
                raise error
            content = {k.lower(): v for k, v in response.headers.items()}.get(
                "content-type", "application/json"
            )
            return Invocation(200, response.body, content, lease.state, lease.wait_seconds)
        finally:
            self._admission.release()
            self.metrics.invocation(target_model, time.perf_counter() - begin, hit, code)

    def _forward(self, handle: Any, body: bytes, content_type: str, accept: str) -> HttpResponse:
        try:
            return self.model_server.invoke(handle, body, content_type, accept)
        except OSError as e:
            raise model_error(
                0, f"Your invocation timed out or its connection broke while waiting for a "
                f"response from the container: {e}"
            ) from e  # fmt: skip
        except Exception as e:  # ModelServerDied: the watch (or this) restarts it
            if not self.model_server.alive():
                self._model_server_died()
            raise ApiError(
                500, "InternalFailure", f"the model server restarted ({e}); retry"
            ) from e

    def models_document(self) -> dict[str, Any]:
        cache = self.cache
        loaded = cache.loaded() if cache is not None else []
        return {
            "source": self.source_uri,
            "budget_bytes": cache.budget_bytes if cache is not None else 0,
            "used_bytes": cache.used_bytes() if cache is not None else 0,
            "baseline_bytes": self.model_server.baseline_bytes,
            "instance_bytes": self.instance_bytes,
            "loaded": [m.__dict__ for m in loaded],
            "measured_bytes": cache.measured() if cache is not None else {},
        }


def _cache_error(error: CacheError) -> ApiError:
    if isinstance(error, ModelMissing):
        return validation_error(error.message)
    if isinstance(error, NotReady):
        return ApiError(429, "ModelNotReadyException", error.message)
    if isinstance(error, Busy):
        return ApiError(503, "ServiceUnavailable", error.message)
    if isinstance(error, LoadFailed):
        if error.status >= 500 and error.status != 507:
            return ApiError(500, "InternalFailure", error.message)
        return model_error(error.status, error.message)
    return ApiError(500, "InternalFailure", error.message)


def serve_local_endpoint(
    settings: Settings,
    models_from: str,
    options: EndpointOptions,
    *,
    mode: str | None = None,
) -> tuple[LocalEndpoint, Callable[[], None]]:
    """A started endpoint over ``models_from`` with a real Triton, and the function that stops it
    and removes its temporary folder (call it in a ``finally``)."""
    from mmetools.serving.triton_backend import TritonBackend

    work = Path(tempfile.mkdtemp(prefix="mmetools-endpoint-"))
    endpoint: LocalEndpoint | None = None

    def stop() -> None:
        try:
            if endpoint is not None:
                endpoint.stop()
        finally:
            remove_tree(work, ignore_errors=True)

    try:
        source = ArtifactSource.from_uri(models_from, settings.root, work / "disk")
        backend = TritonBackend(settings, source, mode=mode)
        endpoint = LocalEndpoint(backend, options, source.uri)
        endpoint.start()
    except BaseException:
        stop()
        raise
    return endpoint, stop
