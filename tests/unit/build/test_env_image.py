"""Envs that ship only what the serving image lacks: the lock split, the pack decisions (no env,
layered env, numpy 2 packed), hash-based bytecode and the slim rules."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmetools.build.env import REQUIREMENTS_DIGEST, VenvPackBackend, pack_env, requirements_digest
from mmetools.build.env.bytecode import compile_bytecode, is_hash_based_pyc
from mmetools.build.env.image import split_lock
from mmetools.build.env.normalize import normalize_env_archive
from mmetools.build.env.slim import SLIM_RULES, slim_rule
from mmetools.core import process
from mmetools.core.errors import EnvPackError
from mmetools.core.interpreters import find_python
from mmetools.core.targets import resolve_target
from support.build.envpack_support import make_model, settings_for
from unit.build.test_envpack import LOCAL_312, FakeTools

TARGET_2412 = resolve_target("nvcr.io/nvidia/tritonserver:24.12-py3")
TARGET_2405 = resolve_target("nvcr.io/nvidia/tritonserver:24.05-py3")
HEADER = "# Locked by `mmetools lock`\n# requirements.txt sha256: x\n"
NUMPY = "numpy==1.26.4 \\\n    --hash=sha256:aaa \\\n    --hash=sha256:bbb\n"
PILLOW = "pillow==13.0.0 \\\n    --hash=sha256:ccc\n"


@pytest.fixture
def tools() -> Iterator[FakeTools]:
    fake = FakeTools()
    previous = process.set_runner(fake)
    try:
        yield fake
    finally:
        process.set_runner(previous)


def test_split_leaves_out_what_the_image_has_at_the_locked_version() -> None:
    split = split_lock(HEADER + NUMPY + PILLOW, TARGET_2412)
    assert split.provided == (("numpy", "1.26.4"),) and split.packed == (("pillow", "13.0.0"),)
    assert split.packed_text == HEADER + PILLOW and split.layered and not split.empty
    everything = split_lock(HEADER + NUMPY, TARGET_2412)
    assert everything.empty and everything.provided == (("numpy", "1.26.4"),)


def test_split_packs_another_version_than_the_images_and_an_image_without_records() -> None:
    numpy2 = "numpy==2.1.0 \\\n    --hash=sha256:ddd\n"
    split = split_lock(HEADER + numpy2, TARGET_2412)
    assert split.packed == (("numpy", "2.1.0"),) and not split.layered
    assert split.differing == (("numpy", "2.1.0", "1.26.4"),)
    # 24.05 installs an unpinned numpy: nothing known, nothing left out
    assert split_lock(HEADER + NUMPY, TARGET_2405).provided == ()


def _lock(tmp_path: Path, body: str, requirements: str) -> Path:
    model = make_model(tmp_path, requirements=requirements)
    lock = model.path / "requirements-3.12.lock"
    lock.write_text(f"{REQUIREMENTS_DIGEST}{requirements_digest(model)}\n{body}")
    return model.path


def test_no_env_when_the_image_provides_everything_and_no_config_asks(
    tmp_path: Path, tools: FakeTools
) -> None:
    folder = _lock(tmp_path, NUMPY, "numpy==1.26.4\n")
    model = make_model(tmp_path, requirements="numpy==1.26.4\n")
    backend = VenvPackBackend(LOCAL_312, "uv")
    # Configs that still ask (as scaffolded) get an empty env layered on the image: it loads.
    messages: list[str] = []
    packed = pack_env(model, settings_for(tmp_path), backend=backend, progress=messages.append)
    assert packed is not None and packed.steps
    install = next(call for call in tools.calls if "install" in call)
    assert install[-3:-1] == ["--no-deps", "-r"]
    assert any("packing an empty env" in m and "numpy==1.26.4" in m for m in messages), messages
    tools.calls.clear()
    for step in ("demo_preprocessing", "demo_postprocessing"):
        config = folder / step / "config.pbtxt"
        config.write_text(config.read_text().split("parameters:")[0])
    (folder / "demo_preprocessing" / "python_env.tar.gz").write_bytes(b"stale")
    assert pack_env(model, settings_for(tmp_path), backend=backend) is None
    assert tools.calls == [] and not (folder / "demo_preprocessing" / "python_env.tar.gz").exists()
    assert not any(path.exists() for path in packed.steps)  # the empty env's copies are gone


def test_layered_env_installs_only_the_missing_without_dependencies(
    tmp_path: Path, tools: FakeTools
) -> None:
    _lock(tmp_path, NUMPY + PILLOW, "numpy==1.26.4\npillow\n")
    model = make_model(tmp_path, requirements="numpy==1.26.4\npillow\n")
    packed = pack_env(model, settings_for(tmp_path), backend=VenvPackBackend(LOCAL_312, "uv"))
    install = next(call for call in tools.calls if "install" in call)
    assert install[-4:-1] == ["--require-hashes", "--no-deps", "-r"]
    assert packed is not None
    with tarfile.open(packed.path) as tar:
        cfg = tar.extractfile("pyvenv.cfg").read()  # type: ignore[union-attr]
    assert b"include-system-site-packages = true" in cfg


def _raw_env(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


SITE = "lib/python3.12/site-packages"


@pytest.mark.parametrize(
    ("rule", "dropped", "kept"),
    [
        ("package-tests", f"{SITE}/numpy/_core/tests/test_a.py", f"{SITE}/numpy/testing/utils.py"),
        ("package-tests", f"{SITE}/numpy/tests/data/x.npy", f"{SITE}/tests/__init__.py"),
        ("headers", f"{SITE}/numpy/_core/include/numpy/ndarrayobject.h", f"{SITE}/pkg/cffi_api.h"),
        ("headers", f"{SITE}/numpy/random/bit_generator.pxd", f"{SITE}/numpy/random/_common.so"),
        ("type-stubs", f"{SITE}/PIL/Image.pyi", f"{SITE}/PIL/Image.py"),
        ("docs", f"{SITE}/numpy/doc/notes.rst", f"{SITE}/numpy/doc/constants.py"),
    ],
)
def test_each_slim_rule_drops_its_files_and_keeps_look_alikes(
    rule: str, dropped: str, kept: str
) -> None:
    found = slim_rule(dropped)
    assert found is not None and found.name == rule
    assert slim_rule(kept) is None
    # never outside a package: metadata, licences, scripts
    assert slim_rule(f"{SITE}/numpy-1.26.4.dist-info/tests/LICENSE.txt") is None
    assert slim_rule("bin/tests/x.h") is None


def test_normalize_reports_bytes_each_rule_saved_and_keeps_only_hash_based_pyc(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "raw.tar"
    hash_pyc = b"\xcb\x0d\x0d\x0a" + (3).to_bytes(4, "little") + b"h" * 8 + b"code"
    time_pyc = b"\xcb\x0d\x0d\x0a" + (0).to_bytes(4, "little") + b"t" * 8 + b"code"
    _raw_env(raw, {
        "pyvenv.cfg": b"home = /x\n",
        f"{SITE}/pkg/tests/test_x.py": b"x" * 100,
        f"{SITE}/pkg/include/pkg.h": b"h" * 10,
        f"{SITE}/pkg/m.py": b"import os\n",
        f"{SITE}/pkg/__pycache__/m.cpython-312.pyc": hash_pyc,
        f"{SITE}/pkg/__pycache__/n.cpython-312.pyc": time_pyc,
        f"{SITE}/pkg/__pycache__/m.cpython-311.pyc": hash_pyc,
    })  # fmt: skip
    out = tmp_path / "env.tar.gz"
    saved = normalize_env_archive(raw, out, TARGET_2412, set())
    assert saved == {"package-tests": 100, "headers": 10, "type-stubs": 0, "docs": 0}
    assert set(saved) == {rule.name for rule in SLIM_RULES}
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert f"{SITE}/pkg/__pycache__/m.cpython-312.pyc" in names
    assert f"{SITE}/pkg/__pycache__/n.cpython-312.pyc" not in names  # timestamp-based
    assert f"{SITE}/pkg/__pycache__/m.cpython-311.pyc" not in names  # another Python's
    assert f"{SITE}/pkg/tests/test_x.py" not in names and f"{SITE}/pkg/m.py" in names


def test_bytecode_is_hash_based_relative_and_the_same_from_two_folders(tmp_path: Path) -> None:
    python = find_python("3.12")
    outputs = []
    for where in ("a", "bb/deeper"):
        prefix = tmp_path / where / "env"
        package = prefix / SITE / "pkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("VALUES = {'a', 'b', 'c'}\n")
        compile_bytecode(python.executable, prefix, TARGET_2412)
        pyc = (package / "__pycache__" / "__init__.cpython-312.pyc").read_bytes()
        assert is_hash_based_pyc(pyc) and str(tmp_path).encode() not in pyc
        outputs.append(pyc)
    assert outputs[0] == outputs[1]
