"""The model cache of a local multi-model endpoint: which TargetModels are loaded, in
least-recently-used order, under a memory budget, with one load per model however many requests
ask for it at once.

SageMaker's behaviour this reproduces (docs/endpoint.md has the sources):

- a request for a loaded model is a cache hit and makes it the most recently used;
- a request for a model that is not loaded starts its load (download, unpack, load) and waits
  for it; concurrent requests for the same model join that one load (single flight);
- a request waits at most ``wait_seconds`` (SageMaker: 60 s) and then gets "not ready" while the
  load goes on (ModelNotReadyException);
- before a load, least-recently-used models that serve no request are unloaded until the
  model's (estimated) memory fits the budget; after the load its measured memory replaces the
  estimate, and more models are unloaded if it was larger.

Loads run one at a time on one worker thread (so each model's memory is measured alone), and at
most ``max_pending_loads`` models may wait for it: beyond that a request is refused at once. The
loader (the real one is :mod:`mmetools.serving.triton_backend`) does the work; this module only
decides, so its logic is unit-tested with a fake loader.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

HIT, MISS = "hit", "miss"


class CacheError(Exception):
    """A request the cache could not serve; ``kind`` says how the runtime API answers it."""

    kind = "internal"

    def __init__(self, target_model: str, message: str) -> None:
        super().__init__(message)
        self.target_model = target_model
        self.message = message


class ModelMissing(CacheError):
    """No artifact under ``<prefix>/<TargetModel>`` (never there, or deleted)."""

    kind = "missing"


class LoadFailed(CacheError):
    """The artifact was found but could not be unpacked or loaded; ``status`` is the container's
    answer (Triton's SageMaker frontend: 400, or 507 when out of memory)."""

    kind = "load_failed"

    def __init__(self, target_model: str, message: str, status: int = 400) -> None:
        super().__init__(target_model, message)
        self.status = status


class NotReady(CacheError):
    """The load goes on, but the request waited as long as it may."""

    kind = "not_ready"


class Busy(CacheError):
    """Too many models already wait for a load: refused at once."""

    kind = "busy"


@dataclass(frozen=True)
class LoadOutcome:
    """A loaded model: the loader's ``handle`` to invoke and unload it, and what it cost."""

    handle: Any
    memory_bytes: int
    download_seconds: float = 0.0
    load_seconds: float = 0.0


class Loader(Protocol):
    def load(self, target_model: str) -> LoadOutcome:
        """Download (or reuse the disk copy), unpack and load; raises ModelMissing/LoadFailed."""

    def unload(self, handle: Any) -> None:
        """Unload a model loaded by :meth:`load`; never raises."""


class CacheEvents(Protocol):
    """Where the cache reports what happened (the endpoint's metrics)."""

    def request(self, target_model: str, state: str, wait_seconds: float) -> None: ...

    def loaded(self, target_model: str, outcome: LoadOutcome) -> None: ...

    def load_failed(self, target_model: str, error: CacheError) -> None: ...

    def unloaded(self, target_model: str, seconds: float, reason: str) -> None: ...


class _NoEvents:
    def request(self, target_model: str, state: str, wait_seconds: float) -> None:
        pass

    def loaded(self, target_model: str, outcome: LoadOutcome) -> None:
        pass

    def load_failed(self, target_model: str, error: CacheError) -> None:
        pass

    def unloaded(self, target_model: str, seconds: float, reason: str) -> None:
        pass


@dataclass
class _Entry:
    target_model: str
    generation: int
    done: threading.Event = field(default_factory=threading.Event)
    outcome: LoadOutcome | None = None
    error: CacheError | None = None
    pins: int = 0

    @property
    def ready(self) -> bool:
        return self.outcome is not None


@dataclass(frozen=True)
class Lease:
    """One request's hold on a loaded model: it is not unloaded until released."""

    target_model: str
    handle: Any
    state: str  # HIT, or MISS when the request waited for (or joined) a load
    wait_seconds: float
    generation: int


@dataclass(frozen=True)
class LoadedModelInfo:
    target_model: str
    memory_bytes: int
    pins: int
    download_seconds: float
    load_seconds: float


class ModelCache:
    """LRU models under ``budget_bytes``, loaded by ``loader`` on first use (see the module)."""

    def __init__(
        self,
        loader: Loader,
        budget_bytes: int,
        *,
        wait_seconds: float = 60.0,
        max_pending_loads: int = 32,
        default_estimate_bytes: int = 256 * 1024 * 1024,
        events: CacheEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loader = loader
        self.budget_bytes = budget_bytes
        self.wait_seconds = wait_seconds
        self.default_estimate_bytes = default_estimate_bytes
        self.events: CacheEvents = events or _NoEvents()
        self._clock = clock
        self._lock = threading.Condition()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._measured: dict[str, int] = {}  # last measured memory per TargetModel
        self._generation = 0
        self._queue: queue.Queue[_Entry | None] = queue.Queue(maxsize=max_pending_loads)
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="model-loader", daemon=True)
        self._worker.start()

    # -- requests -------------------------------------------------------------------------------

    def acquire(self, target_model: str, wait_seconds: float | None = None) -> Lease:
        """A lease on ``target_model``, loading it first if needed; raises a CacheError."""
        limit = self.wait_seconds if wait_seconds is None else wait_seconds
        begin = self._clock()
        state = HIT
        while True:
            with self._lock:
                entry = self._entries.get(target_model)
                if entry is not None and entry.ready and entry.generation == self._generation:
                    entry.pins += 1
                    self._entries.move_to_end(target_model)
                    waited = self._clock() - begin
                    self.events.request(target_model, state, waited)
                    assert entry.outcome is not None
                    return Lease(
                        target_model, entry.outcome.handle, state, waited, entry.generation
                    )
                state = MISS
                if entry is None or entry.generation != self._generation:
                    entry = self._start_load(target_model)
            remaining = limit - (self._clock() - begin)
            if remaining <= 0 or not entry.done.wait(remaining):
                self.events.request(target_model, MISS, self._clock() - begin)
                raise NotReady(
                    target_model,
                    f"{target_model} is still loading after {limit:g} s; the load goes on: "
                    "retry the request",
                )
            if entry.error is not None:
                self.events.request(target_model, MISS, self._clock() - begin)
                raise entry.error
            # loaded: loop to pin it (it may have been unloaded again in between)

    def release(self, lease: Lease) -> None:
        with self._lock:
            entry = self._entries.get(lease.target_model)
            if entry is not None and entry.generation == lease.generation and entry.pins > 0:
                entry.pins -= 1
            self._lock.notify_all()

    def _start_load(self, target_model: str) -> _Entry:
        """Under the lock: a LOADING entry, queued for the worker (Busy when the queue is full)."""
        entry = _Entry(target_model, self._generation)
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            raise Busy(
                target_model,
                f"{self._queue.maxsize} models already wait for a load; try again later",
            ) from None
        self._entries[target_model] = entry
        return entry

    # -- the loading worker ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                entry = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._closed:
                    return
                continue
            if entry is None:
                return
            try:
                self._load(entry)
            except Exception as e:  # a loader bug must not kill the worker: fail this load
                logger.exception("loading %s failed", entry.target_model)
                self._fail(entry, LoadFailed(entry.target_model, f"internal error: {e}", 500))

    def _load(self, entry: _Entry) -> None:
        target = entry.target_model
        if entry.generation != self._generation or self._closed:
            self._fail(entry, CacheError(target, "the endpoint restarted its model server"))
            return
        estimate = min(self.estimate(target), self.budget_bytes)
        measured = self.measured().get(target)
        if measured is not None and measured > self.budget_bytes:
            self._fail(
                entry,
                LoadFailed(
                    target,
                    f"{target} needs about {measured // 2**20} MiB, more than the whole model "
                    f"memory budget of {self.budget_bytes // 2**20} MiB",
                    507,
                ),
            )
            return
        self._make_room(estimate, keep=target)
        try:
            outcome = self.loader.load(target)
        except CacheError as e:
            self._fail(entry, e)
            return
        with self._lock:
            stale = entry.generation != self._generation or self._closed
            if not stale:
                self._measured[target] = outcome.memory_bytes
                entry.outcome = outcome
                self._entries.move_to_end(target)
            self._lock.notify_all()
        if stale:
            self.loader.unload(outcome.handle)
            self._fail(entry, CacheError(target, "the endpoint restarted its model server"))
            return
        self.events.loaded(target, outcome)
        # The measurement replaces the estimate: unload more if the model was bigger, before the
        # waiting requests run on it (the budget holds while they do).
        self._make_room(0, keep=target)
        entry.done.set()

    def _fail(self, entry: _Entry, error: CacheError) -> None:
        with self._lock:
            if self._entries.get(entry.target_model) is entry:
                del self._entries[entry.target_model]
            entry.error = error
            self._lock.notify_all()
        self.events.load_failed(entry.target_model, error)
        entry.done.set()

    def estimate(self, target_model: str) -> int:
        """The memory a model will take: its last measurement, else the mean of the models
        measured so far, else the default."""
        with self._lock:
            if target_model in self._measured:
                return self._measured[target_model]
            if self._measured:
                return sum(self._measured.values()) // len(self._measured)
            return self.default_estimate_bytes

    def used_bytes(self) -> int:
        with self._lock:
            return self._used()

    def _used(self) -> int:
        return sum(e.outcome.memory_bytes for e in self._entries.values() if e.outcome is not None)

    def _make_room(self, needed: int, keep: str) -> None:
        """Unload idle least-recently-used models until ``needed`` more bytes fit; waits for a
        busy model to become idle when only busy ones are left."""
        while True:
            with self._lock:
                if self._used() + needed <= self.budget_bytes or self._closed:
                    return
                idle = [
                    e
                    for name, e in self._entries.items()
                    if name != keep and e.ready and e.pins == 0
                ]
                if not idle:
                    busy = [n for n, e in self._entries.items() if n != keep and e.ready]
                    if not busy:
                        return  # nothing left to unload: the model may exceed the estimate
                    self._lock.wait(1.0)
                    continue
                victim = idle[0]
                del self._entries[victim.target_model]
            self._unload(victim, "evicted")

    def _unload(self, entry: _Entry, reason: str) -> None:
        assert entry.outcome is not None
        begin = self._clock()
        self.loader.unload(entry.outcome.handle)
        seconds = self._clock() - begin
        logger.info("unloaded %s (%s) in %.2f s", entry.target_model, reason, seconds)
        self.events.unloaded(entry.target_model, seconds, reason)

    # -- administration -------------------------------------------------------------------------

    def loaded(self) -> list[LoadedModelInfo]:
        """The loaded models, least recently used first."""
        with self._lock:
            return [
                LoadedModelInfo(
                    e.target_model,
                    e.outcome.memory_bytes,
                    e.pins,
                    e.outcome.download_seconds,
                    e.outcome.load_seconds,
                )
                for e in self._entries.values()
                if e.outcome is not None
            ]

    def measured(self) -> dict[str, int]:
        with self._lock:
            return dict(self._measured)

    def forget_all(self) -> int:
        """The model server died: every loaded model is gone (nothing to unload). Loads queued or
        running fail; the next request of each model loads it again. Returns how many were lost."""
        with self._lock:
            lost = sum(1 for e in self._entries.values() if e.ready)
            self._generation += 1
            self._entries.clear()
            self._lock.notify_all()
        return lost

    def close(self, unload: bool = True) -> None:
        """Stop the worker (waiting requests fail), unloading every model unless the model
        server is about to stop anyway (``unload=False``)."""
        with self._lock:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
            self._generation += 1
            self._lock.notify_all()
        for entry in entries:
            if entry.ready and unload:
                self._unload(entry, "shutdown")
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the worker sees _closed at its next entry and fails it
        self._worker.join(timeout=5.0)
