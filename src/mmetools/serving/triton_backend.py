"""The model server behind a local endpoint: ONE Triton with its SageMaker frontend in
multi-model mode (as in SageMaker's Triton container), and the loader the model cache calls.

A load does what SageMaker does on an instance: fetch ``<prefix>/<TargetModel>`` (the disk copy
when unchanged), check the tarball's members and unpack it with the native ``tar`` into a fresh
``<work>/<id>/model`` folder, then ``POST /models`` to Triton with the TargetModel header. The
model's memory is the growth of the server's and its python-backend stubs' resident memory
across the load (loads run one at a time, :mod:`mmetools.serving.cache`). Unloading is
``DELETE /models/<id>``; Triton finishes an unload in the background, so it waits (bounded)
until the model's stub processes are gone and its memory is really free.

When Triton dies, ``on_death`` is called once (the endpoint restarts it and forgets its models).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmetools.core.errors import MmetoolsError, ProcessError
from mmetools.core.process import run
from mmetools.core.settings import Settings
from mmetools.serving.cache import LoadFailed, LoadOutcome
from mmetools.serving.source import ArtifactSource
from mmetools.testing.artifact_test import (
    TARGET_MODEL_HEADER,
    check_artifact,
    emulated_target,
    serve_as_the_image,
)
from mmetools.testing.memory import sample_process_tree
from mmetools.testing.serving_env import ServingEnv, current_environment
from mmetools.testing.triton import SAGEMAKER, HttpResponse, TritonServer, resolve_mode
from mmetools.core.tree import remove_tree

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
LOAD_TIMEOUT = 360.0  # SageMaker keeps loading a model for up to 360 s
INVOKE_TIMEOUT = 60.0  # a container must answer an invocation within 60 s
UNLOAD_SETTLE = 10.0  # how long an unload may take to free its stub processes


@dataclass(frozen=True)
class LoadedHandle:
    model_id: str
    target_model: str
    folder: Path  # <server work>/<model_id>, removed on unload
    generation: int
    stubs: int  # python-backend stub processes the model added


class ModelServerDied(MmetoolsError):
    """Triton is gone; the endpoint restarts it."""


class TritonBackend:
    """One SageMaker-frontend Triton and the loads into it (see the module)."""

    def __init__(
        self,
        settings: Settings,
        source: ArtifactSource,
        *,
        mode: str | None = None,
        python_env: ServingEnv | None = None,
        load_timeout: float = LOAD_TIMEOUT,
        invoke_timeout: float = INVOKE_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.source = source
        self.mode = resolve_mode(settings.triton.mode, mode, None)
        self.python_env = python_env or current_environment()
        self.load_timeout = load_timeout
        self.invoke_timeout = invoke_timeout
        self.on_death: Callable[[], None] = lambda: None
        self.generation = 0
        self.baseline_bytes = 0
        self._server: TritonServer | None = None
        self._lock = threading.RLock()

    # -- the server -------------------------------------------------------------------------------

    def _new_server(self) -> TritonServer:
        try:
            # Published artifacts carry packed envs built for the serving target: emulate it.
            target = emulated_target(self.settings, self.mode, True)
        except MmetoolsError as e:
            logger.warning("serving packed envs with this machine's Python: %s", e)
            target = None
        return TritonServer(
            target_python=target,
            mode=self.mode,
            frontend=SAGEMAKER,
            python_env=self.python_env,
            cache_dir=self.settings.cache_dir,
        )

    def start(self) -> None:
        with self._lock:
            server = self._new_server()
            server.start()
            self._server = server
            self.generation += 1
            assert server.pid is not None
            self.baseline_bytes = sample_process_tree(server.pid).total

    @property
    def server(self) -> TritonServer:
        if self._server is None:
            raise ModelServerDied("the model server is not running")
        return self._server

    def alive(self) -> bool:
        server = self._server
        return server is not None and server.alive()

    def restart(self) -> None:
        """Stop what is left of the server and start a new one (every model is gone)."""
        with self._lock:
            if self._server is not None:
                logger.warning("Triton %s: restarting it", self._server.exit_description())
                self._server.stop()
                self._server = None
            self.start()

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def memory_bytes(self) -> int:
        server = self._server
        if server is None or server.pid is None:
            return 0
        try:
            return sample_process_tree(server.pid).total
        except Exception:  # psutil.NoSuchProcess while it dies
            return 0

    def _died(self, server: TritonServer) -> bool:
        if server.died():
            self.on_death()
            return True
        return False

    # -- the loader (mmetools.serving.cache.Loader) ----------------------------------------------

    def load(self, target_model: str) -> LoadOutcome:
        fetched = self.source.fetch(target_model)
        with self._lock:  # waits for a restart in progress
            if self._server is None:
                raise LoadFailed(target_model, "the model server is not running; retry", 500)
            server = self._server
            generation = self.generation
        assert server.workdir is not None and server.pid is not None
        model_id = uuid.uuid4().hex[:16]
        work = server.workdir / model_id
        folder = work / "model"
        begin = time.perf_counter()
        try:
            self._unpack(target_model, fetched.path, folder, server)
            before = sample_process_tree(server.pid)
            names = sorted(p.name for p in folder.iterdir() if p.is_dir())
            self._post_load(server, target_model, model_id, folder, names)
            after = sample_process_tree(server.pid)
        except BaseException:
            remove_tree(work, ignore_errors=True)
            raise
        seconds = time.perf_counter() - begin
        memory = max(after.total - before.total, MiB)
        logger.info(
            "loaded %s in %.2f s (%.0f MiB, %d stub processes)",
            target_model,
            seconds,
            memory / MiB,
            after.stubs - before.stubs,
        )
        handle = LoadedHandle(model_id, target_model, work, generation, after.stubs - before.stubs)
        return LoadOutcome(handle, memory, fetched.seconds if fetched.downloaded else 0.0, seconds)

    def _unpack(
        self, target_model: str, artifact: Path, folder: Path, server: TritonServer
    ) -> None:
        """Check the members (nothing may escape the folder), then the native tar, as SageMaker
        unpacks; the target's stub goes into each packed-env step when the server emulates it."""
        try:
            check_artifact(
                artifact, self.settings.triton.max_unpacked_mb * MiB, free_at=folder.parents[1]
            )
            folder.mkdir(parents=True)
            run(
                ["tar", "-xzf", str(artifact), "-C", str(folder), "--no-same-owner"],
                context=f"unpacking {target_model}",
            )
            serve_as_the_image(server, folder)
        except (MmetoolsError, ProcessError, OSError) as e:
            raise LoadFailed(target_model, f"{target_model}: cannot unpack: {e}", 400) from e

    def _post_load(
        self, server: TritonServer, target_model: str, model_id: str, folder: Path, names: list[str]
    ) -> None:
        body = json.dumps({"model_name": model_id, "url": str(folder)}).encode()
        since = server.log_offset()
        headers = {TARGET_MODEL_HEADER: target_model, "Content-Type": "application/json"}
        try:
            response = server.request("POST", "/models", body, headers, timeout=self.load_timeout)
        except OSError as e:
            if self._died(server):
                raise LoadFailed(
                    target_model, f"the model server died while loading {target_model}", 500
                ) from e
            raise LoadFailed(target_model, f"loading {target_model}: no answer: {e}", 500) from e
        if response.status != 200:
            excerpt = "\n".join(server.log_excerpt([target_model, *names], since, limit=12))
            raise LoadFailed(
                target_model,
                f"{response.error_text()}" + (f"\n{excerpt}" if excerpt else ""),
                response.status,
            )

    def unload(self, handle: LoadedHandle) -> None:
        server = self._server
        try:
            if server is None or handle.generation != self.generation or not server.alive():
                return
            assert server.pid is not None
            stubs_before = sample_process_tree(server.pid).stubs
            try:
                response = server.request(
                    "DELETE",
                    f"/models/{handle.model_id}",
                    headers={TARGET_MODEL_HEADER: handle.target_model},
                    timeout=self.load_timeout,
                )
            except OSError as e:
                logger.warning("unloading %s: %s", handle.target_model, e)
                self._died(server)
                return
            if response.status != 200:
                logger.warning("unloading %s: HTTP %s", handle.target_model, response.status)
                return
            deadline = time.monotonic() + UNLOAD_SETTLE
            while time.monotonic() < deadline and handle.stubs > 0:
                if sample_process_tree(server.pid).stubs <= stubs_before - handle.stubs:
                    break
                time.sleep(0.05)
        except Exception as e:  # psutil races with a dying server: the model is gone anyway
            logger.warning("unloading %s: %s", handle.target_model, e)
        finally:
            remove_tree(handle.folder, ignore_errors=True)

    # -- invocations ----------------------------------------------------------------------------

    def invoke(
        self, handle: LoadedHandle, body: bytes, content_type: str, accept: str
    ) -> HttpResponse:
        """POST /models/<id>/invoke; ModelServerDied when Triton is gone (the endpoint restarts
        it), OSError on a timeout or a broken connection."""
        server = self.server
        if handle.generation != self.generation:
            raise ModelServerDied("the model server restarted")
        headers = {TARGET_MODEL_HEADER: handle.target_model, "Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        try:
            return server.request(
                "POST", f"/models/{handle.model_id}/invoke", body, headers, self.invoke_timeout
            )
        except OSError as e:
            if self._died(server):
                raise ModelServerDied(f"the model server {server.exit_description()}") from e
            raise
