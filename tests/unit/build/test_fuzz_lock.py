"""The fuzz tier for ``mmetools lock`` inputs (issue 20): requirements.txt and the lock itself.

hypothesis mutates the example model's requirements.txt (bytes) and writes requirement lines of
every kind (pins, ranges, markers, extras, URLs, git and local paths, options, includes); then
``mmetools lock`` and ``mmetools lock --check`` run in-process, with uv offline and an empty
package folder (nothing resolves, nothing is downloaded). Each must exit 0, 1 or 2 with a
message, never raise or print a traceback, and a failed lock must leave the lock file as it was.

The default run is bounded (FEW examples per property); ``pytest -m fuzz`` runs MANY.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.fuzz import FEW, MANY, assert_clean_exit, bounded, mutated, run_cli

from conftest import MODELS_DIR

MODEL = "screen_detector"
COPY_IGNORE = shutil.ignore_patterns(
    "python_env.tar.gz", ".python_env.json", "__pycache__", ".mypy_cache", "model.onnx"
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-lock")
    shutil.copytree(MODELS_DIR / MODEL, root / MODEL, ignore=COPY_IGNORE)
    (root / "no-packages").mkdir()
    return root


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    """uv offline, against an empty folder and an empty cache: nothing resolves, nothing is
    downloaded, and uv fails fast."""
    for variable, value in (("UV_OFFLINE", "1"), ("UV_NO_INDEX", "1"),
                            ("UV_FIND_LINKS", str(template / "no-packages")),
                            ("UV_CACHE_DIR", str(template / "empty-uv-cache"))):  # fmt: skip
        monkeypatch.setenv(variable, value)


@pytest.fixture
def offline_cached(monkeypatch: pytest.MonkeyPatch, template: Path) -> None:
    """uv offline with the machine's cache: the example's requirements resolve (as
    ci/bootstrap left them), so ``lock --check`` gets to read the (mutated) lock."""
    for variable, value in (("UV_OFFLINE", "1"), ("UV_NO_INDEX", "1"),
                            ("UV_FIND_LINKS", str(template / "no-packages"))):  # fmt: skip
        monkeypatch.setenv(variable, value)


@contextlib.contextmanager
def fresh_copy(template: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        root = Path(folder) / "repo"
        shutil.copytree(template, root)
        with contextlib.chdir(root):
            yield root


def locks(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / MODEL).glob("requirements-*.lock"))}


def lock_property(template: Path, file: str, data: bytes, argv: list[str]) -> None:
    with fresh_copy(template) as root:
        (root / MODEL / file).write_bytes(data)
        before = locks(root)
        code, text = run_cli(argv)
        assert_clean_exit(code, text, allowed=(0, 1, 2))
        if code != 0 or "--check" in argv:
            assert locks(root) == before, "a failed lock or lock --check changed a lock file"


NAMES = st.sampled_from(["numpy", "pillow", "Pillow", "torch", "x", "a-b_c.d", "", "numpy[extra]"])
SPECS = st.sampled_from(["", "==1.26.4", ">=1,<2", "~=1.0", "===1", "==1.*", ">=>1", "@", "!=",
                         " ; python_version < '3.11'", " ; sys_platform == 'win32'", ";"])  # fmt: skip
SPECIAL = st.sampled_from([
    "git+https://github.com/numpy/numpy@v1.26.4#egg=numpy",
    "numpy @ git+https://github.com/numpy/numpy",
    "numpy @ https://example.invalid/numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.whl",
    "numpy @ file:///nonexistent/numpy-1.26.4-cp312-cp312-linux_x86_64.whl",
    "./local-folder", "-e .", "-e git+https://example.invalid/x.git#egg=x", "-r other.txt",
    "-c constraints.txt", "--index-url https://example.invalid/simple", "--extra-index-url x",
    "--hash=sha256:" + "0" * 64, "numpy==1.26.4 --hash=sha256:" + "a" * 64, "\\", "# comment",
    "--no-binary :all:", "--pre", "-f .", "numpy==1.26.4 \\\n    --hash=sha256:" + "b" * 64,
])  # fmt: skip
LINES = st.lists(st.one_of(st.tuples(NAMES, SPECS).map("".join), SPECIAL, st.text(max_size=20)),
                 max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))  # fmt: skip


def _pair(examples: int, marks: list[pytest.MarkDecorator]) -> dict[str, Callable[..., None]]:
    requirements = (MODELS_DIR / MODEL / "requirements.txt").read_text()
    lock = (MODELS_DIR / MODEL / "requirements-3.12.lock").read_text()

    @bounded(examples, deadline=None)
    @given(mutated(requirements))
    @example(b"numpy==1.26.4\n\xff\xfe\n")
    def requirements_bytes_test(template: Path, offline: None, mutation: bytes) -> None:
        lock_property(template, "requirements.txt", mutation, ["lock", MODEL])

    @bounded(examples, deadline=None)
    @given(LINES)
    def requirement_lines_test(template: Path, offline: None, text: bytes) -> None:
        lock_property(template, "requirements.txt", text, ["lock", MODEL])

    @bounded(max(1, examples // 2), deadline=None)  # uv resolves for real here: seconds each
    @given(mutated(lock))
    @example(b"\xff\xfe" + lock.encode())  # not UTF-8: was a UnicodeDecodeError traceback
    def lock_bytes_test(template: Path, offline_cached: None, mutation: bytes) -> None:
        lock_property(template, "requirements-3.12.lock", mutation, ["lock", "--check", MODEL])

    tests = {
        "requirements_bytes": requirements_bytes_test,
        "requirement_lines": requirement_lines_test,
        "lock_bytes": lock_bytes_test,
    }
    for mark in marks:
        tests = {name: mark(test) for name, test in tests.items()}
    return tests


_SHORT = _pair(FEW, [])
_LONG = _pair(MANY, [pytest.mark.fuzz])

test_mutated_requirements_lock_cleanly = _SHORT["requirements_bytes"]
test_requirement_lines_of_every_kind_lock_cleanly = _SHORT["requirement_lines"]
test_mutated_lock_files_check_cleanly = _SHORT["lock_bytes"]
test_long_mutated_requirements = _LONG["requirements_bytes"]
test_long_requirement_lines = _LONG["requirement_lines"]
test_long_mutated_lock_files = _LONG["lock_bytes"]
