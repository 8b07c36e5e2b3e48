"""The bundled server's backends folder: the python backend, the stub for the serving Python,
and the Python-based onnxruntime and pytorch backends (``src/mmetools/testing/backends/``), assembled
once into the cache."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


from mmetools.core.errors import TritonError

logger = logging.getLogger(__name__)

BACKENDS_SOURCE = Path(__file__).parent.parent / "backends"
PYTHON_BASED_BACKENDS = ("onnxruntime", "pytorch")
SITE_PACKAGES_VARIABLE = "MMETOOLS_BACKEND_SITE_PACKAGES"
STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class BundledTriton:
    """The Triton build shipped in the nvidia-pytriton wheel."""

    executable: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stubs: Path  # python_backend_stubs/<major.minor>/triton_python_backend_stub
    libraries: Path  # nvidia_pytriton.libs

    def stub_for(self, python_version: str) -> Path:
        stub = self.stubs / python_version / STUB_NAME
        if not stub.is_file():
            available = sorted(p.parent.name for p in self.stubs.glob(f"*/{STUB_NAME}"))
            raise TritonError(
                f"the bundled Triton has no python backend stub for Python {python_version} "
                f"(it has {', '.join(available) or 'none'}); serve with that Python or use "
                "--mode native"
            )
        return stub


def find_bundled_triton() -> BundledTriton:
    """The tritonserver inside the installed nvidia-pytriton wheel; TritonError when absent."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonError(
            "nvidia-pytriton is not installed, so there is no bundled tritonserver "
            "(run ci/bootstrap, or use --mode native / --triton-image)"
        )
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    bundled = BundledTriton(
        executable=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stubs=root / "python_backend_stubs",
        libraries=package.parent / "nvidia_pytriton.libs",
    )
    for path in (bundled.executable, bundled.python_backend, bundled.libraries):
        if not path.exists():
            raise TritonError(f"the nvidia-pytriton installation is incomplete: {path} is missing")
    return bundled


def libpython_dir() -> Path | None:
    """Folder of this interpreter's libpython3.X.so.1.0, which the stub links against."""
    libdir = sysconfig.get_config_var("LIBDIR")
    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    if libdir and (Path(libdir) / name).exists():
        return Path(libdir)
    return None  # the system loader may still find it (Debian's libpython3.X package)


def _digest(paths: Iterable[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(str(path).encode())
        if path.name.endswith(".py"):
            digest.update(path.read_bytes())
        else:  # large binaries: their identity is enough
            status = path.stat()
            digest.update(f"{status.st_size}:{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def assemble_backends(bundled: BundledTriton, cache_dir: Path, python_version: str) -> Path:
    """A backends folder for the bundled server, built once per content and cached::

    python/{libtriton_python.so, triton_python_backend_utils.py, triton_python_backend_stub}
    onnxruntime/model.py, pytorch/model.py      (Python-based backends from mmetools)
    """
    stub = bundled.stub_for(python_version)
    sources = [
        *sorted(bundled.python_backend.iterdir()),
        stub,
        *(BACKENDS_SOURCE / name / "model.py" for name in PYTHON_BASED_BACKENDS),
    ]
    key = _digest(sources, python_version)
    parent = cache_dir / "triton-backends"
    destination = parent / f"py{python_version}-{key}"
    if destination.is_dir():
        return destination
    parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    try:
        (building / "python").mkdir()
        for source in bundled.python_backend.iterdir():
            shutil.copy2(source, building / "python" / source.name)
        shutil.copy2(stub, building / "python" / STUB_NAME)
        for name in PYTHON_BASED_BACKENDS:
            (building / name).mkdir()
            shutil.copy2(BACKENDS_SOURCE / name / "model.py", building / name / "model.py")
        try:
            os.replace(building, destination)
        except OSError:
            if not destination.is_dir():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    logger.debug("assembled Triton backends in %s", destination)
    return destination


def backend_site_packages() -> str:
    """Where this interpreter finds onnxruntime and torch, for the Python-based backends."""
    paths = sysconfig.get_paths()
    folders = dict.fromkeys([paths["purelib"], paths["platlib"]])
    return os.pathsep.join(folders)
