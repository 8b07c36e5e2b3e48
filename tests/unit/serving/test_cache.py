"""mmetools.serving.cache with a fake loader (no Triton): LRU order, the memory budget, one load
per model for concurrent requests, the wait limit, refusals, failures and a model-server restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from mmetools.serving.cache import (
    HIT,
    MISS,
    Busy,
    LoadFailed,
    LoadOutcome,
    ModelCache,
    ModelMissing,
    NotReady,
)

MiB = 1024 * 1024


@dataclass
class FakeLoader:
    """Loads instantly (or when ``gate`` opens); each model takes ``sizes[name]`` bytes."""

    sizes: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    unload_seconds: float = 0.0
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, target_model: str) -> LoadOutcome:
        if self.gate is not None:
            assert self.gate.wait(10)
        with self.lock:
            self.loads.append(target_model)
        if target_model in self.missing:
            raise ModelMissing(target_model, f"no {target_model}")
        if target_model in self.broken:
            raise LoadFailed(target_model, f"{target_model}: bad config", 400)
        return LoadOutcome(
            f"handle-{target_model}", self.sizes.get(target_model, 100 * MiB), 0.1, 0.2
        )

    def unload(self, handle: Any) -> None:
        time.sleep(self.unload_seconds)
        with self.lock:
            self.unloads.append(str(handle).removeprefix("handle-"))


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def make_cache(loader: FakeLoader) -> Iterator[Any]:
    caches: list[ModelCache] = []

    def make(budget: int = 300 * MiB, **options: Any) -> ModelCache:
        cache = ModelCache(loader, budget, default_estimate_bytes=100 * MiB, **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


def use(cache: ModelCache, name: str) -> str:
    lease = cache.acquire(name)
    cache.release(lease)
    return lease.state


def test_first_request_loads_then_hits(make_cache: Any, loader: FakeLoader) -> None:
    cache = make_cache()
    assert use(cache, "a.tar.gz") == MISS
    assert use(cache, "a.tar.gz") == HIT
    assert loader.loads == ["a.tar.gz"]
    assert [m.target_model for m in cache.loaded()] == ["a.tar.gz"]


def test_least_recently_used_is_evicted_when_the_budget_is_full(
    make_cache: Any, loader: FakeLoader
) -> None:
    cache = make_cache(budget=300 * MiB)
    for name in ("a", "b", "c"):
        use(cache, name)
    use(cache, "a")  # a becomes the most recently used: b is now the oldest
    use(cache, "d")
    assert loader.unloads == ["b"]
    assert [m.target_model for m in cache.loaded()] == ["c", "a", "d"]
    assert cache.used_bytes() <= 300 * MiB


def test_a_measured_model_bigger_than_estimated_evicts_more_after_its_load(
    make_cache: Any, loader: FakeLoader
) -> None:
    loader.sizes = {"big": 250 * MiB}
    cache = make_cache(budget=300 * MiB)
    use(cache, "a")
    use(cache, "b")
    loader.unload_seconds = 0.2  # slow unloads: the request must still find them done
    use(cache, "big")  # estimated 100 MiB (the mean so far), measured 250
    assert loader.unloads == ["a", "b"]
    assert cache.used_bytes() == 250 * MiB
    assert cache.estimate("big") == 250 * MiB  # the measurement is remembered


def test_a_model_in_use_is_not_evicted(make_cache: Any, loader: FakeLoader) -> None:
    cache = make_cache(budget=200 * MiB)
    held = cache.acquire("a")
    use(cache, "b")
    use(cache, "c")  # a is the oldest but serves a request: b goes
    assert loader.unloads == ["b"]
    cache.release(held)


def test_concurrent_first_requests_share_one_load(make_cache: Any, loader: FakeLoader) -> None:
    loader.gate = threading.Event()
    cache = make_cache()
    states: list[str] = []
    threads = [threading.Thread(target=lambda: states.append(use(cache, "a"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    loader.gate.set()
    for thread in threads:
        thread.join(10)
    assert loader.loads == ["a"]
    assert states == [MISS] * 8


def test_a_request_waits_at_most_the_limit_and_the_load_goes_on(
    make_cache: Any, loader: FakeLoader
) -> None:
    loader.gate = threading.Event()
    cache = make_cache(wait_seconds=0.2)
    with pytest.raises(NotReady, match="still loading after 0.2 s"):
        cache.acquire("a")
    loader.gate.set()
    deadline = time.monotonic() + 5
    while not cache.loaded() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert use(cache, "a") == HIT


def test_too_many_pending_loads_are_refused_at_once(make_cache: Any, loader: FakeLoader) -> None:
    loader.gate = threading.Event()
    cache = make_cache(wait_seconds=0.05, max_pending_loads=2)
    for name in ("a", "b", "c"):  # a is taken by the worker, b and c fill the queue
        with pytest.raises(NotReady):
            cache.acquire(name)
        time.sleep(0.05)
    begin = time.monotonic()
    with pytest.raises(Busy, match="2 models already wait for a load"):
        cache.acquire("d")
    assert time.monotonic() - begin < 0.05
    loader.gate.set()


def test_a_missing_model_and_a_broken_one_fail_every_time_without_staying_cached(
    make_cache: Any, loader: FakeLoader
) -> None:
    loader.missing = {"gone"}
    loader.broken = {"bad"}
    cache = make_cache()
    for _ in range(2):
        with pytest.raises(ModelMissing):
            cache.acquire("gone")
        with pytest.raises(LoadFailed) as failed:
            cache.acquire("bad")
        assert failed.value.status == 400
    assert loader.loads == ["gone", "bad", "gone", "bad"]
    assert cache.loaded() == []


def test_a_model_bigger_than_the_budget_is_refused_with_507(
    make_cache: Any, loader: FakeLoader
) -> None:
    loader.sizes = {"huge": 500 * MiB}
    cache = make_cache(budget=300 * MiB)
    use(cache, "huge")  # its size is unknown before the first load (estimate 100 MiB)
    cache.forget_all()
    with pytest.raises(LoadFailed, match="more than the whole model memory budget") as failed:
        cache.acquire("huge")
    assert failed.value.status == 507


def test_after_a_model_server_restart_models_load_again_on_demand(
    make_cache: Any, loader: FakeLoader
) -> None:
    cache = make_cache()
    use(cache, "a")
    assert cache.forget_all() == 1
    assert cache.loaded() == []
    assert use(cache, "a") == MISS
    assert loader.loads == ["a", "a"]
    assert loader.unloads == []  # a dead server has nothing to unload


def test_close_unloads_every_model(make_cache: Any, loader: FakeLoader) -> None:
    cache = make_cache()
    use(cache, "a")
    use(cache, "b")
    cache.close()
    assert sorted(loader.unloads) == ["a", "b"]
