"""Memory per model: process-tree RSS (real processes), NVML parsing (a fake NVML module: this
machine has no GPU, so the real GPU path is not exercised here), models per instance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from mmetools.testing.memory import (
    GiB,
    GpuMemory,
    MemorySample,
    gpu_memory,
    models_per_instance,
    sample_process_tree,
)

MiB = 1024 * 1024


@pytest.fixture
def parent_with_children() -> Iterator[int]:
    """A real process with two children: one named like Triton's python-backend stub (argv[0]),
    one not."""
    script = "exec -a triton_python_backend_stub sleep 60 & " "sleep 60 & " "wait"
    process = subprocess.Popen(["bash", "-c", script])
    try:
        import psutil

        deadline = time.monotonic() + 10
        while len(psutil.Process(process.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield process.pid
    finally:
        import psutil

        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def test_only_stub_children_count_as_stubs(parent_with_children: int) -> None:
    sample = sample_process_tree(parent_with_children, nvml=_no_gpu())
    assert sample.stubs == 1  # the plain `sleep` child is not a stub
    assert sample.server_rss > 0 and sample.stubs_rss > 0
    assert sample.total == sample.server_rss + sample.stubs_rss
    assert sample.gpus == ()


def test_this_process_has_no_stubs() -> None:
    sample = sample_process_tree(os.getpid(), nvml=_no_gpu())
    assert (sample.stubs, sample.stubs_rss) == (0, 0) and sample.server_rss > 10 * MiB


class _FakeNvml:
    """The four pynvml calls memory.gpu_memory makes, with two GPUs."""

    def __init__(self) -> None:
        self.shut_down = False

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * GiB, total=16 * GiB, free=0)

    def nvmlShutdown(self) -> None:
        self.shut_down = True


def _no_gpu() -> Any:
    def fail() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    return SimpleNamespace(nvmlInit=fail)


def test_gpu_memory_with_fake_nvml() -> None:
    nvml = _FakeNvml()
    assert gpu_memory(nvml) == (GpuMemory(0, GiB, 16 * GiB), GpuMemory(1, 2 * GiB, 16 * GiB))
    assert nvml.shut_down


def test_no_nvml_means_no_gpu_figures() -> None:
    assert gpu_memory(_no_gpu()) == ()


def test_real_nvml_on_this_cpu_machine_reports_no_gpu() -> None:
    if sys.platform != "linux" or os.path.exists("/dev/nvidiactl"):
        pytest.skip("a GPU machine: covered by the fake-NVML test only")
    assert gpu_memory() == ()


def test_models_per_instance_at_80_percent() -> None:
    before = MemorySample(server_rss=200 * MiB, stubs_rss=0, stubs=0)
    after = MemorySample(server_rss=300 * MiB, stubs_rss=700 * MiB, stubs=3)
    fit = models_per_instance(before, after, instance_gib=16)
    # (16 GiB * 0.8 - 200 MiB) / 800 MiB = 16.13 -> 16
    assert (fit.models, fit.per_model_bytes, fit.baseline_bytes) == (16, 800 * MiB, 200 * MiB)
    assert models_per_instance(before, after, instance_gib=0.1).models == 0


def test_gpu_memory_is_the_budget_when_there_is_a_gpu() -> None:
    gpu = (GpuMemory(0, 1 * GiB, 16 * GiB),)
    before = MemorySample(100 * MiB, 0, 0, gpu)
    after = MemorySample(900 * MiB, 0, 0, (GpuMemory(0, 2 * GiB, 16 * GiB),))
    fit = models_per_instance(before, after, instance_gib=16)
    assert (fit.per_model_bytes, fit.models) == (GiB, 11)  # (12.8 - 1) / 1 GiB
