"""Shared test fixtures: a real S3 endpoint (moto_server) on loopback, and the repository root."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from mmetools.release.provenance import CI_RUN_VARIABLES
from support.tiers import misplaced_integration_tests

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What CI systems set that changes mmetools' behaviour (provenance is required when CI=true, run
# ids and branches are recorded): the suite runs as a developer's would wherever it runs, and the
# tests of CI behaviour set these themselves.
CI_VARIABLES = (
    "CI", "GITHUB_ACTIONS", "GITLAB_CI", "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "CI_COMMIT_REF_NAME",
    "MMETOOLS_BRANCH", *CI_RUN_VARIABLES,
)  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _outside_ci() -> Iterator[None]:
    # Session-wide, so session fixtures (published versions, built artifacts) see it too.
    with pytest.MonkeyPatch.context() as patch:
        for variable in CI_VARIABLES:
            patch.delenv(variable, raising=False)
        yield


@contextlib.contextmanager
def running_moto(
    environment: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[str]:
    """A moto_server on a free loopback port, with ``environment`` added to this process's
    (IAM checks, request recording); yields its URL once it answers, stops it afterwards."""
    port = free_port()
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert executable, "moto_server is not installed in the test environment (ci/bootstrap)"
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **(environment or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on {url}")
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real HTTP S3 endpoint (moto_server) on 127.0.0.1; yields its URL. One per test session."""
    with running_moto() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Point boto3 and DVC at the moto endpoint with dummy credentials; returns the endpoint URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture(autouse=True)
def _isolated_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never touch the user's ~/.cache/mmetools unless they opt in."""
    if "MMETOOLS_CACHE_DIR" not in os.environ:
        monkeypatch.setenv(
            "MMETOOLS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mmetools-cache")
        )


EXAMPLE_MODELS = ("screen_detector", "intent_classifier")


@pytest.fixture(scope="session")
def example_weights() -> None:
    """The example models' weight files in the working tree: pulled from the repository's DVC
    remote (.dvc/example-remote) when missing; no dvc process when they already match."""
    from mmetools.model.dvc import fetch_weights
    from mmetools.model.folder import model_folder

    for name in EXAMPLE_MODELS:
        fetch_weights(model_folder(MODELS_DIR / name))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_for_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-scoped fixtures (the Triton server of mmetools' pytest plugin) are set up before any
    function-scoped one: they need the isolated cache too."""
    with pytest.MonkeyPatch.context() as patch:
        if "MMETOOLS_CACHE_DIR" not in os.environ:
            cache = tmp_path_factory.getbasetemp() / "mmetools-cache"
            patch.setenv("MMETOOLS_CACHE_DIR", str(cache))
        yield


def _session_triton_processes() -> set[int]:
    """Live tritonserver and python-backend stub processes started by this test session (their
    command lines name the session's cache folder, where the backends are assembled)."""
    cache = os.environ["MMETOOLS_CACHE_DIR"]
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if cache in cmdline and state != "Z":
            found.add(int(entry.name))
    return found


@pytest.fixture
def no_triton_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Servers started in the test leave no process and no temporary folder behind. Temporary
    folders go to the yielded folder, which must be empty again at the end."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = _session_triton_processes()
    yield temp
    deadline = time.monotonic() + 10  # killed stubs may take a moment to be reaped
    while (leftover := _session_triton_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leftover, f"Triton processes left running: {sorted(leftover)}"
    assert sorted(p.name for p in temp.iterdir()) == []


@pytest.fixture(scope="session")
def session_triton_processes() -> Callable[[], set[int]]:
    """For module-scoped checks: returns the function listing this session's Triton processes."""
    return _session_triton_processes


TESTS_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A tier is a folder (tests/support/tiers.py): an `integration` test under tests/unit fails
    collection. tryfirst: checked before `-m` deselects anything."""
    misplaced = misplaced_integration_tests(items, TESTS_DIR)
    if misplaced:
        raise pytest.UsageError(
            "tests marked integration belong in tests/integration/: " + ", ".join(misplaced)
        )
