"""Memory per model: resident memory of a Triton server and its python-backend stubs, GPU
memory through NVML where there is a GPU, and how many models fit in one instance.

Triton runs every Python step (and the Python-based onnxruntime/pytorch backends) in its own
``triton_python_backend_stub`` child process, so a model's cost is the growth of the server's
RSS plus its stubs' RSS across the load.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from mmetools.core.errors import UsageError

logger = logging.getLogger(__name__)

GiB = 1024**3
STUB_NAME = "triton_python_backend_stub"
INSTANCE_FILL = 0.8  # fill an instance to 80% of its memory, as teams running MMEs aim for


@dataclass(frozen=True)
class GpuMemory:
    index: int
    used: int  # bytes
    total: int


@dataclass(frozen=True)
class MemorySample:
    """Resident memory (bytes) of a server process and of its python-backend stub children."""

    server_rss: int
    stubs_rss: int
    stubs: int
    gpus: tuple[GpuMemory, ...] = ()

    @property
    def total(self) -> int:
        return self.server_rss + self.stubs_rss

    @property
    def gpu_used(self) -> int:
        return sum(g.used for g in self.gpus)

    def as_json(self) -> dict[str, Any]:
        return {
            "server_rss": self.server_rss,
            "stubs_rss": self.stubs_rss,
            "stubs": self.stubs,
            "total": self.total,
            "gpus": [g.__dict__ for g in self.gpus],
        }


def sample_process_tree(pid: int, nvml: Any = None) -> MemorySample:
    """RSS of ``pid`` and of its descendant stub processes, plus GPU memory when NVML answers."""
    import psutil

    server = psutil.Process(pid)
    server_rss = server.memory_info().rss
    stubs_rss = stubs = 0
    for child in server.children(recursive=True):
        try:
            if child.name() == STUB_NAME or STUB_NAME in " ".join(child.cmdline()):
                stubs_rss += child.memory_info().rss
                stubs += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a stub that ended while we looked
    return MemorySample(server_rss, stubs_rss, stubs, gpu_memory(nvml))


def gpu_memory(nvml: Any = None) -> tuple[GpuMemory, ...]:
    """Used/total memory of every GPU via NVML (``pynvml`` from nvidia-ml-py); () without one.
    ``nvml`` replaces the module (tests: this machine has no GPU)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return ()
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded on CPU machines
        logger.debug("no GPU memory figures: %s", e)
        return ()
    try:
        found = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            info = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index))
            found.append(GpuMemory(index, int(info.used), int(info.total)))
        return tuple(found)
    finally:
        nvml.nvmlShutdown()


@dataclass(frozen=True)
class Fit:
    """How many models of this size fit in one instance at ``INSTANCE_FILL``."""

    instance_bytes: int
    baseline_bytes: int  # the server with no model loaded
    per_model_bytes: int
    models: int

    def as_json(self) -> dict[str, Any]:
        return {
            "instance_bytes": self.instance_bytes,
            "fill": INSTANCE_FILL,
            "baseline_bytes": self.baseline_bytes,
            "per_model_bytes": self.per_model_bytes,
            "models_per_instance": self.models,
        }


def check_instance_memory(gib: float | None, option: str = "--instance-memory") -> None:
    """UsageError unless ``gib`` (an instance's memory in GiB, or None) is finite and above 0:
    checked before a run, not after it (nan used to fail in int() once the run was over)."""
    if gib is not None and (not math.isfinite(gib) or not 0 < gib <= 1e6):
        raise UsageError(
            f"{option} {gib:g}: give the instance's memory in GiB, above 0 (e.g. 16 for "
            "ml.m5.xlarge)"
        )


def models_per_instance(
    before: MemorySample, after: MemorySample, instance_gib: float, fill: float = INSTANCE_FILL
) -> Fit:
    """floor((instance * fill - server baseline) / per-model growth); GPU memory is the budget
    when there is a GPU, RSS otherwise."""
    check_instance_memory(instance_gib, "instance memory")
    instance = int(instance_gib * GiB)
    if before.gpus and after.gpus:
        baseline, growth = before.gpu_used, after.gpu_used - before.gpu_used
    else:
        baseline, growth = before.total, after.total - before.total
    growth = max(growth, 1)
    models = max(0, math.floor((instance * fill - baseline) / growth))
    return Fit(instance, baseline, growth, models)


def describe_bytes(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"
