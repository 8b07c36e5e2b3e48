"""A real Triton Inference Server for tests: launched, polled until ready, always stopped.

Three modes share one interface (:class:`TritonServer`):

- ``bundled``: the tritonserver inside the nvidia-pytriton wheel (CPU). Its build has only the
  python backend, so mmetools assembles a backends folder (cached) holding the python backend,
  the stub for the serving Python, and two *Python-based backends*, ``onnxruntime`` and
  ``pytorch`` (``src/mmetools/testing/backends/``), which Triton picks for ``onnxruntime_onnx`` and
  ``pytorch_libtorch`` models. The model repository is served unmodified.
- ``native``: a ``tritonserver`` on PATH (NVIDIA's image) with its native backends and GPUs.
- ``docker``: NVIDIA's image run with ``docker run --gpus all``; the staged repository and the
  source folders it links to are mounted at the same paths.

The Python steps' stub takes ``sys.prefix`` from the first ``python3`` on PATH (it runs Python in
isolated mode, PYTHONPATH is ignored), so the serving environment's ``bin`` goes first on PATH.

Every server runs with explicit model control on an initially empty repository folder in its own
temporary work folder (named with the owner's pid), on free loopback ports, logs to a file there,
and is stopped (process group terminated, then killed) by :meth:`TritonServer.stop`, the context
manager, SIGTERM, or the death of the Python process that started it (PR_SET_PDEATHSIG for the
server, a watchdog process for its whole group, stubs included); the next server start removes
what a dead run left (its group, shared memory and work folder).

Modules: ``backends`` (the bundled server's backends folder), ``launch`` (mode choice and the
command line per mode), ``lifecycle`` (dying with the parent, the watchdog, cleaning up after dead runs), ``logs`` (log excerpts),
``client`` (the HTTP conversation: requests, tensors, responses), ``server`` (``TritonServer``).
This package re-exports what the rest of mmetools uses.
"""

from __future__ import annotations

from mmetools.testing.triton.backends import (
    SITE_PACKAGES_VARIABLE,
    STUB_NAME,
    BundledTriton,
    assemble_backends,
    find_bundled_triton,
    libpython_dir,
)
from mmetools.testing.triton.client import HttpResponse, LoadResult
from mmetools.testing.triton.launch import (
    AUTO,
    BUNDLED,
    DOCKER,
    KSERVE,
    LOOPBACK,
    MODES,
    NATIVE,
    SAGEMAKER,
    Launch,
    Ports,
    TargetPython,
    bundled_launch,
    docker_launch,
    emulation_argv,
    free_port,
    native_launch,
    resolve_mode,
    server_arguments,
)
from mmetools.testing.triton.server import TritonServer, running_server

__all__ = [
    "STUB_NAME",
    "TargetPython",
    "emulation_argv",
    "AUTO",
    "BUNDLED",
    "BundledTriton",
    "DOCKER",
    "HttpResponse",
    "KSERVE",
    "LOOPBACK",
    "Launch",
    "LoadResult",
    "MODES",
    "NATIVE",
    "Ports",
    "SAGEMAKER",
    "SITE_PACKAGES_VARIABLE",
    "TritonServer",
    "assemble_backends",
    "bundled_launch",
    "docker_launch",
    "find_bundled_triton",
    "free_port",
    "libpython_dir",
    "native_launch",
    "resolve_mode",
    "running_server",
    "server_arguments",
]
