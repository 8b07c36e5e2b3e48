"""A capacity plan for a multi-model endpoint, from measured per-model memory and load time and a
traffic mix.

The hit ratio of an LRU cache holding models of different sizes under independent requests is
predicted two ways:

- Che's approximation (Che, Tung, Wang 2002; Fricker, Robert, Roberts 2012 for unequal sizes):
  the characteristic time T solves ``sum_i m_i (1 - exp(-p_i T)) = C``, and the hit ratio is
  ``sum_i p_i (1 - exp(-p_i T))`` (T counted in requests, so it does not depend on the rate);
- a seeded simulation of the same LRU over a run of N requests, which also counts the cold fill
  at the start (what a short load test measures).

Instances: SageMaker keeps routing a model's requests to an instance where it is loaded, so N
instances behave like one cache of N times the memory, partitioned by model (docs/endpoint.md).
The plan picks, for each instance size, the fewest instances that reach the target hit ratio and
carry the request rate, and keeps the size with the least total memory. A miss costs a load
(seconds), so a p99 below the cold latency needs at least 99% hits.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GiB = 1024**3
INSTANCE_SIZES_GIB = (8, 16, 32, 64, 128, 192, 256, 384, 512)
SAFETY_FACTOR = 0.5  # AWS's guidance for the autoscaling target
DISABLE_CACHING_BELOW = 0.5  # hit ratio under which caching serves few requests


@dataclass(frozen=True)
class ModelProfile:
    name: str
    memory_bytes: int
    load_seconds: float  # download + unpack + load
    share: float  # of all requests


def che_hit_ratio(models: Sequence[ModelProfile], capacity_bytes: float) -> float:
    """Steady-state LRU hit ratio by Che's approximation (unequal sizes)."""
    active = [m for m in models if m.share > 0]
    if not active:
        return math.nan
    if sum(m.memory_bytes for m in active) <= capacity_bytes:
        return 1.0
    if capacity_bytes <= 0:
        return 0.0

    def filled(t: float) -> float:
        return sum(m.memory_bytes * -math.expm1(-m.share * t) for m in active)

    low, high = 0.0, 1.0
    while filled(high) < capacity_bytes and high < 1e15:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if filled(middle) < capacity_bytes else (low, middle)
    t = (low + high) / 2
    return sum(m.share * -math.expm1(-m.share * t) for m in active)


def simulated_hit_ratio(
    models: Sequence[ModelProfile],
    capacity_bytes: float,
    requests: int,
    *,
    seed: int = 0,
    repeats: int = 20,
) -> float:
    """Mean hit ratio of an LRU cache over ``requests`` independent requests, from empty."""
    active = [m for m in models if m.share > 0]
    if not active or requests <= 0:
        return math.nan
    rng = random.Random(seed)
    names = [m.name for m in active]
    weights = [m.share for m in active]
    size = {m.name: m.memory_bytes for m in active}
    hits = 0
    for _ in range(repeats):
        cache: OrderedDict[str, int] = OrderedDict()
        used = 0
        for name in rng.choices(names, weights, k=requests):
            if name in cache:
                hits += 1
                cache.move_to_end(name)
                continue
            while cache and used + size[name] > capacity_bytes:
                _, freed = cache.popitem(last=False)
                used -= freed
            cache[name] = size[name]
            used += size[name]
    return hits / (requests * repeats)


@dataclass(frozen=True)
class InstanceOption:
    instance_gib: int
    model_capacity_bytes: int
    instances: int
    hit_ratio: float
    total_gib: int


@dataclass(frozen=True)
class CapacityPlan:
    models: tuple[ModelProfile, ...]
    mix: str
    request_rate: float  # requests/s the fleet must carry
    target_hit_ratio: float  # as asked
    required_hit_ratio: float  # what the p99 budget needs too
    p99_budget_ms: float
    warm_p99_ms: float
    cold_ms: float
    baseline_bytes: int
    per_instance_rate: float  # requests/s one instance sustains (measured)
    chosen: InstanceOption | None
    options: tuple[InstanceOption, ...]
    invocations_per_instance: int | None
    model_cache_setting: str
    reasons: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "mix": self.mix,
            "request_rate": self.request_rate,
            "target_hit_ratio": self.target_hit_ratio,
            "required_hit_ratio": self.required_hit_ratio,
            "p99_budget_ms": self.p99_budget_ms,
            "warm_p99_ms": self.warm_p99_ms,
            "cold_ms": self.cold_ms,
            "baseline_bytes": self.baseline_bytes,
            "per_instance_rate": self.per_instance_rate,
            "chosen": None if self.chosen is None else self.chosen.__dict__,
            "options": [o.__dict__ for o in self.options],
            "invocations_per_instance": self.invocations_per_instance,
            "model_cache_setting": self.model_cache_setting,
            "reasons": list(self.reasons),
            "models": [m.__dict__ for m in self.models],
        }


def plan_capacity(
    models: Sequence[ModelProfile],
    *,
    mix: str,
    request_rate: float,
    per_instance_rate: float,
    warm_p99_ms: float,
    target_hit_ratio: float = 0.9,
    p99_budget_ms: float = 500.0,
    baseline_bytes: int = 0,
    fill: float = 0.9,
    sizes_gib: Sequence[int] = INSTANCE_SIZES_GIB,
    max_instances: int = 100,
) -> CapacityPlan:
    """The fewest instances (and their memory) for the target hit ratio and p99 (see module)."""
    active = [m for m in models if m.share > 0]
    cold_ms = 1000 * max((m.load_seconds for m in active), default=0.0) + warm_p99_ms
    reasons = []
    required = target_hit_ratio
    if warm_p99_ms <= p99_budget_ms < cold_ms and required < 0.99:
        required = 0.99
        reasons.append(
            f"a miss costs up to {cold_ms / 1000:.1f} s (load + request), above the p99 budget of "
            f"{p99_budget_ms:g} ms: at most 1% of requests may miss, so the hit ratio must be >= 0.99"
        )
    by_rate = max(1, math.ceil(request_rate / per_instance_rate)) if per_instance_rate > 0 else 1
    options = []
    for size in sizes_gib:
        capacity = int(size * GiB * fill) - baseline_bytes
        if capacity <= 0:
            continue
        biggest = max((m.memory_bytes for m in active), default=0)
        if biggest > capacity:
            continue
        for instances in range(by_rate, max_instances + 1):
            ratio = che_hit_ratio(active, capacity * instances)
            if ratio >= required:
                options.append(InstanceOption(size, capacity, instances, ratio, size * instances))
                break
    chosen = min(options, key=lambda o: (o.total_gib, o.instances), default=None)
    if chosen is None:
        reasons.append(f"no fleet of up to {max_instances} instances reaches {required:g}")
    invocations = (
        max(1, math.floor(per_instance_rate * SAFETY_FACTOR * 60))
        if per_instance_rate > 0
        else None
    )
    best_ratio = chosen.hit_ratio if chosen is not None else che_hit_ratio(
        active, max(int(max(sizes_gib) * GiB * fill) - baseline_bytes, 0) * max_instances
    )  # fmt: skip
    setting = "Enabled"
    if best_ratio < DISABLE_CACHING_BELOW:
        setting = "Disabled"
        reasons.append(
            f"even the planned fleet serves only {best_ratio:.0%} of requests from memory: models "
            "are invoked too rarely to stay loaded (AWS suggests ModelCacheSetting Disabled then)"
        )
    return CapacityPlan(
        tuple(models), mix, request_rate, target_hit_ratio, required, p99_budget_ms, warm_p99_ms,
        cold_ms, baseline_bytes, per_instance_rate, chosen, tuple(options), invocations, setting,
        tuple(reasons),
    )  # fmt: skip
