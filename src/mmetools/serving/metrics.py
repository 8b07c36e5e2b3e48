"""The local endpoint's metrics, named like SageMaker's CloudWatch multi-model endpoint metrics,
as JSON and as Prometheus text, plus per-TargetModel latency (which CloudWatch does not have).

CloudWatch (AWS/SageMaker namespace, dimensions EndpointName/VariantName) reports
``ModelCacheHit`` (1 per invocation whose model was loaded, 0 otherwise: its Average is the hit
ratio), ``LoadedModelCount``, ``ModelLoadingWaitTime``, ``ModelUnloadingTime``,
``ModelDownloadingTime``, ``ModelLoadingTime`` (microseconds) and, per instance,
``MemoryUtilization`` (percent). Here times are reported in seconds (``_seconds`` in Prometheus)
with their count, sum and maximum; the JSON keeps CloudWatch's names.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmetools.serving.cache import HIT, CacheError, LoadOutcome

LATENCY_SAMPLES = 2048  # per TargetModel: the most recent latencies, for percentiles


@dataclass
class Timing:
    """count / sum / max of a duration in seconds."""

    count: int = 0
    total: float = 0.0
    maximum: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.maximum = max(self.maximum, seconds)

    def as_json(self) -> dict[str, float]:
        mean = self.total / self.count if self.count else 0.0
        return {"count": self.count, "sum": self.total, "max": self.maximum, "average": mean}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _ModelLatency:
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    count: int = 0
    errors: int = 0
    hits: int = 0
    memory_bytes: int | None = None  # of its last load
    load_seconds: float | None = None
    download_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        values = list(self.samples)
        return {
            "invocations": self.count,
            "errors": self.errors,
            "cache_hits": self.hits,
            "p50_ms": percentile(values, 50) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "mean_ms": (sum(values) / len(values) * 1000) if values else math.nan,
            "memory_bytes": self.memory_bytes,
            "load_seconds": self.load_seconds,
            "download_seconds": self.download_seconds,
        }


class EndpointMetrics:
    """Thread-safe counters of one local endpoint (the cache reports into it)."""

    def __init__(
        self,
        instance_bytes: int,
        memory_sample: Callable[[], int] | None = None,
        loaded_count: Callable[[], int] | None = None,
        accounted_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.instance_bytes = instance_bytes
        self._memory_sample = memory_sample
        self._loaded_count = loaded_count
        self._accounted = accounted_bytes
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.invocations = 0
        self.hits = 0
        self.misses = 0
        self.errors: dict[str, int] = {}
        self.loading_wait = Timing()
        self.unloading = Timing()
        self.downloading = Timing()
        self.loading = Timing()
        self.loads = 0
        self.load_failures = 0
        self.evictions = 0
        self.restarts = 0
        self.peak_memory = 0
        self._models: dict[str, _ModelLatency] = {}

    # -- reported by the cache (CacheEvents) -----------------------------------------------------

    def request(self, target_model: str, state: str, wait_seconds: float) -> None:
        with self._lock:
            if state == HIT:
                self.hits += 1
            else:
                self.misses += 1
                self.loading_wait.add(wait_seconds)

    def loaded(self, target_model: str, outcome: LoadOutcome) -> None:
        with self._lock:
            self.loads += 1
            self.downloading.add(outcome.download_seconds)
            self.loading.add(outcome.load_seconds)
            model = self._models.setdefault(target_model, _ModelLatency())
            model.memory_bytes = outcome.memory_bytes
            model.load_seconds = outcome.load_seconds
            if outcome.download_seconds or model.download_seconds is None:
                model.download_seconds = outcome.download_seconds

    def load_failed(self, target_model: str, error: CacheError) -> None:
        with self._lock:
            self.load_failures += 1

    def unloaded(self, target_model: str, seconds: float, reason: str) -> None:
        with self._lock:
            self.unloading.add(seconds)
            if reason == "evicted":
                self.evictions += 1

    # -- reported by the runtime API -------------------------------------------------------------

    def invocation(self, target_model: str, seconds: float, hit: bool, error: str = "") -> None:
        with self._lock:
            self.invocations += 1
            model = self._models.setdefault(target_model, _ModelLatency())
            model.count += 1
            model.hits += int(hit)
            if error:
                model.errors += 1
                self.errors[error] = self.errors.get(error, 0) + 1
            else:
                model.samples.append(seconds)

    def refused(self, error: str) -> None:
        with self._lock:
            self.errors[error] = self.errors.get(error, 0) + 1

    def restarted(self) -> None:
        with self._lock:
            self.restarts += 1

    # -- views -----------------------------------------------------------------------------------

    def memory_now(self) -> int:
        value = self._memory_sample() if self._memory_sample is not None else 0
        with self._lock:
            self.peak_memory = max(self.peak_memory, value)
        return value

    def snapshot(self) -> dict[str, Any]:
        memory = self.memory_now()
        loaded = self._loaded_count() if self._loaded_count is not None else 0
        accounted = self._accounted() if self._accounted is not None else 0
        with self._lock:
            decided = self.hits + self.misses
            minutes = max((time.monotonic() - self.started) / 60, 1e-9)
            return {
                "ModelCacheHit": {
                    "sum": self.hits,
                    "sample_count": decided,
                    "average": self.hits / decided if decided else math.nan,
                },
                "LoadedModelCount": loaded,
                "ModelLoadingWaitTime": self.loading_wait.as_json(),
                "ModelUnloadingTime": self.unloading.as_json(),
                "ModelDownloadingTime": self.downloading.as_json(),
                "ModelLoadingTime": self.loading.as_json(),
                "MemoryUtilization": 100.0 * memory / self.instance_bytes,
                "memory": {
                    "instance_bytes": self.instance_bytes,
                    "process_tree_bytes": memory,
                    "peak_process_tree_bytes": self.peak_memory,
                    "models_accounted_bytes": accounted,
                },
                "Invocations": self.invocations,
                "errors": dict(self.errors),
                "loads": self.loads,
                "load_failures": self.load_failures,
                "evictions": self.evictions,
                "evictions_per_minute": self.evictions / minutes,
                "model_server_restarts": self.restarts,
                "uptime_seconds": minutes * 60,
                "per_target_model": {n: m.as_json() for n, m in sorted(self._models.items())},
            }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(snapshot: dict[str, Any]) -> str:
    """The snapshot in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
            lines.append(f"{name}{labels} {shown}")

    cache = snapshot["ModelCacheHit"]
    metric("mme_model_cache_hit_total", "counter", "ModelCacheHit: invocations whose model was "
           "loaded", [("", cache["sum"])])  # fmt: skip
    metric("mme_model_cache_lookups_total", "counter", "invocations that needed a model",
           [("", cache["sample_count"])])  # fmt: skip
    metric(
        "mme_loaded_model_count", "gauge", "LoadedModelCount", [("", snapshot["LoadedModelCount"])]
    )
    for key, name in (
        ("ModelLoadingWaitTime", "mme_model_loading_wait_seconds"),
        ("ModelUnloadingTime", "mme_model_unloading_seconds"),
        ("ModelDownloadingTime", "mme_model_downloading_seconds"),
        ("ModelLoadingTime", "mme_model_loading_seconds"),
    ):
        timing = snapshot[key]
        metric(f"{name}_sum", "counter", f"{key}, seconds (sum)", [("", timing["sum"])])
        metric(f"{name}_count", "counter", f"{key} (count)", [("", timing["count"])])
    metric("mme_memory_utilization_percent", "gauge", "MemoryUtilization: the model server's "
           "resident memory / instance memory", [("", snapshot["MemoryUtilization"])])  # fmt: skip
    metric("mme_invocations_total", "counter", "Invocations", [("", snapshot["Invocations"])])
    metric(
        "mme_evictions_total",
        "counter",
        "models unloaded to make room",
        [("", snapshot["evictions"])],
    )
    metric("mme_model_server_restarts_total", "counter", "model server restarts",
           [("", snapshot["model_server_restarts"])])  # fmt: skip
    metric("mme_invocation_errors_total", "counter", "refused or failed invocations by error code",
           [(f'{{code="{_label(c)}"}}', n) for c, n in sorted(snapshot["errors"].items())])  # fmt: skip
    per_model = snapshot["per_target_model"].items()
    for quantile, key in (("0.5", "p50_ms"), ("0.99", "p99_ms")):
        metric(
            f"mme_target_model_latency_seconds_q{quantile.replace('.', '')}",
            "gauge",
            f"latency quantile {quantile} per TargetModel (recent requests)",
            [(f'{{target_model="{_label(n)}"}}', m[key] / 1000) for n, m in per_model],
        )
    metric("mme_target_model_invocations_total", "counter", "invocations per TargetModel",
           [(f'{{target_model="{_label(n)}"}}', m["invocations"]) for n, m in per_model])  # fmt: skip
    return "\n".join(lines) + "\n"
