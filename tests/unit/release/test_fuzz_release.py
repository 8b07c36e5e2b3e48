"""The fuzz tier for ``mmetools diff`` and ``mmetools loadtest`` inputs (issue 20).

diff: hypothesis mutates the model's ``regression.toml``, the published previous version's
``.sha256`` and its tarball (a file destination); loadtest: every option, as text. The CLI runs
in-process and must exit 1 or 2 with a message, never raise or print a traceback. The work
behind the inputs (the serving env, Triton, locust) is a tripwire: reaching it means the inputs
were accepted, which for loadtest must agree with an independent check of the options.

The default run is bounded (FEW examples per property); ``pytest -m fuzz`` runs MANY.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import FEW, MANY, assert_clean_exit, bounded, marked, mutated, run_cli
from support.release.publish_support import make_artifact

from conftest import MODELS_DIR

MODEL = "screen_detector"
PUBLISHED = "pub/prod/screen_detector_1.tar.gz"
REGRESSION = """\
atol = 1e-5
rtol = 1e-4
max_beyond_share = 0.0
max_flip_rate = 0.0
[outputs.PROBABILITY]
atol = 1e-3
"""
SIDECAR = "0" * 64 + "  screen_detector_1.tar.gz\n"  # the shape of a .sha256: mutated
COPY_IGNORE = shutil.ignore_patterns(
    "python_env.tar.gz", ".python_env.json", "__pycache__", ".mypy_cache", "model.onnx"
)

pytestmark = pytest.mark.timeout(600)


class Reached(Exception):
    """The command accepted its inputs and started the work behind them."""


def _tripwire(*_: Any, **__: Any) -> Any:
    raise Reached


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model at version 2, version 1 published in a folder destination, a regression.toml."""
    root = tmp_path_factory.mktemp("fuzz-release")
    shutil.copytree(MODELS_DIR / MODEL, root / MODEL, ignore=COPY_IGNORE)
    (root / MODEL / "model_version.txt").write_text("2\n")
    (root / MODEL / "regression.toml").write_text(REGRESSION)
    (root / "mmetools.toml").write_text(
        '[publish]\nstaging_uri = "file:pub/staging"\nproduction_uri = "file:pub/prod"\n'
    )
    make_artifact(root / "pub" / "prod", name="screen_detector_1.tar.gz")
    return root


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmetools.release import loadtest
    from mmetools.release.diff import run

    monkeypatch.setattr(run, "ensure_serving_env", _tripwire)
    for name in ("ensure_serving_env", "run_locust", "loadtest_endpoint"):
        monkeypatch.setattr(loadtest, name, _tripwire)
    import mmetools.release.loadtest as module

    monkeypatch.setattr(module, "loadtest_endpoint", _tripwire, raising=False)


@contextlib.contextmanager
def fresh_copy(template: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        root = Path(folder) / "repo"
        shutil.copytree(template, root)
        with contextlib.chdir(root):
            yield root


def run_or_reach(argv: list[str]) -> tuple[int, str] | None:
    """The CLI's (exit code, output), or None when it reached the work behind the inputs."""
    try:
        return run_cli(argv)
    except Reached:
        return None


# -------------------------------------------------------------------------------------------------
# diff


def diff_file_property(template: Path, relative: str, mutation: bytes) -> None:
    with fresh_copy(template) as root:
        (root / relative).write_bytes(mutation)
        result = run_or_reach(["diff", MODEL])
        if result is not None:
            assert_clean_exit(*result, allowed=(1, 2))


def diff_truncated_property(template: Path, keep: int) -> None:
    with fresh_copy(template) as root:
        tarball = root / PUBLISHED
        data = tarball.read_bytes()
        tarball.write_bytes(data[: keep % len(data)])
        result = run_or_reach(["diff", MODEL])
        assert result is not None, "a truncated previous version was accepted"
        code, text = result
        assert_clean_exit(code, text, allowed=(1,))
        assert PUBLISHED.split("/")[-1] in text, text  # the published URI, not a temp path


@pytest.mark.parametrize("relative", [f"{MODEL}/regression.toml", PUBLISHED + ".sha256"])
def test_diff_input_that_is_not_utf8_is_a_message(
    template: Path, tripwires: None, relative: str
) -> None:
    diff_file_property(template, relative, b"\x80\xff" + (template / relative).read_bytes())


# -------------------------------------------------------------------------------------------------
# loadtest

NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "0.5", "1", "2", "16", "1e9", "",
                     "x", " 3 ", "1_000", "0x10", "１"]),  # fmt: skip
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 20_000).map(str),
)
LIST_TEXT = st.lists(NUMBER_TEXT, max_size=4).map(",".join)
OUT = st.sampled_from(["out", "a-file", "a-file/sub", "out/deeper", "."])
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "--concurrency": LIST_TEXT,
        "--rates": LIST_TEXT,
        "--seconds": NUMBER_TEXT,
        "--p99-budget-ms": NUMBER_TEXT,
        "--safety-factor": NUMBER_TEXT,
        "--instance-memory": NUMBER_TEXT,
        "--out": OUT,
    },
)


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        return None


def options_are_valid(options: dict[str, str]) -> bool:
    """An independent statement of what loadtest accepts (docs/release-evidence.md)."""
    levels_text = options.get("--concurrency", "1,2,4,8,16")
    levels = [p.strip() for p in levels_text.split(",") if p.strip()]
    if not all(p.lstrip("+-").isdigit() and p.isascii() and 1 <= int(p) <= 10_000 for p in levels):
        return False
    rates = _numbers(options.get("--rates", ""))
    if rates is None or not all(math.isfinite(r) and 0 < r <= 100_000 for r in rates):
        return False
    if not levels and not rates:
        return False
    ranges = {"--seconds": (1, 86_400, "10"), "--p99-budget-ms": (1, 3_600_000, "500"),
              "--safety-factor": (0.01, 1, "0.5"), "--instance-memory": (1e-300, 1e6, "16")}  # fmt: skip
    for option, (low, high, default) in ranges.items():
        value = _numbers(options.get(option, default))
        if (
            value is None
            or len(value) != 1
            or not (math.isfinite(value[0]) and low <= value[0] <= high)
        ):
            return False
    return options.get("--out", "out") not in ("a-file", "a-file/sub")


def loadtest_property(template: Path, options: dict[str, str]) -> None:
    with fresh_copy(template) as root:
        (root / "a-file").write_text("not a folder\n")
        argv = ["loadtest", MODEL]
        for option, value in options.items():
            argv += [option, value]
        result = run_or_reach(argv)
        if result is None:
            assert options_are_valid(options), f"work started with {options}"
            return
        code, text = result
        assert_clean_exit(code, text, allowed=(2,))
        assert not options_are_valid(options), text


# -------------------------------------------------------------------------------------------------
# The bounded run (every CI run) and the long run (-m fuzz), one pair per property


def _pair(examples: int, marks: list[pytest.MarkDecorator]) -> dict[str, Callable[..., None]]:
    @bounded(examples)
    @given(mutated(REGRESSION))
    def thresholds_test(template: Path, tripwires: None, mutation: bytes) -> None:
        diff_file_property(template, f"{MODEL}/regression.toml", mutation)

    @bounded(examples)
    @given(mutated(SIDECAR))
    def sidecar_test(template: Path, tripwires: None, mutation: bytes) -> None:
        diff_file_property(template, PUBLISHED + ".sha256", mutation)

    @bounded(examples)
    @given(st.integers(0, 1 << 20))
    def truncated_test(template: Path, tripwires: None, keep: int) -> None:
        diff_truncated_property(template, keep)

    @bounded(examples * 3)
    @given(OPTIONS)
    def loadtest_test(template: Path, tripwires: None, options: dict[str, str]) -> None:
        loadtest_property(template, options)

    return marked(
        {
            "thresholds": thresholds_test,
            "sidecar": sidecar_test,
            "truncated": truncated_test,
            "loadtest": loadtest_test,
        },
        marks,
    )


_SHORT = _pair(FEW, [])
_LONG = _pair(MANY, [pytest.mark.fuzz])

test_mutated_regression_toml_exits_cleanly = _SHORT["thresholds"]
test_mutated_previous_sha256_exits_cleanly = _SHORT["sidecar"]
test_truncated_previous_tarball_is_refused_naming_it = _SHORT["truncated"]
test_loadtest_options_are_checked_before_any_work = _SHORT["loadtest"]
test_long_mutated_regression_toml = _LONG["thresholds"]
test_long_mutated_previous_sha256 = _LONG["sidecar"]
test_long_truncated_previous_tarball = _LONG["truncated"]
test_long_loadtest_options = _LONG["loadtest"]
