"""A real remote cache (BuildGrid on 127.0.0.1) and clones of this repository that run ./pants
against it: for tests/test_remote_cache.py and bench/bench_remote_cache.py.

Each clone gets its own empty Pants local store and named caches, so everything it does not
run itself comes from the remote cache. Which processes a run executed is read from Pants' own
log: the engine logs "spawned local process as ... for Process { ... description: ... }" for
each process it starts (target process_execution::local, debug level)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BGD = REPO_ROOT / ".venv-buildgrid" / "bin" / "bgd"

# CAS and ByteStream on disk (not bounded by the server's memory), and an LRU action cache in
# memory: what Pants' remote cache needs. thread-pool-size is also gRPC's limit on concurrent
# RPCs; BuildGrid's default (5 per core: 10 here) answered ResourceExhausted to clone B's parallel
# output downloads at 20 models, and Pants then ran those processes locally. 128 is Pants' own
# default concurrency ([GLOBAL].remote_store_rpc_concurrency).
BUILDGRID_CONFIG = """\
thread-pool-size: 128
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !disk-storage &cas-storage
    path: {cas}
caches:
  - !lru-action-cache &action-cache
    storage: *cas-storage
    max-cached-refs: 65536
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: ''
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *cas-storage
      - !bytestream
        storage: *cas-storage
"""

SPAWNED = re.compile(r'spawned local process as .*? description: "([^"]*)"')
COUNTER = re.compile(r"^\s+([a-z_]+): (\d+)$", re.MULTILINE)
# The processes that test or package a model (the fetch process always runs: it is uncached).
MODEL_PROCESS = re.compile(r"^mmetools (test|build|env) ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def buildgrid(work: Path, timeout: float = 180.0) -> Iterator[str]:
    """Start `bgd server start CONFIG` on a free loopback port; yield its grpc:// address."""
    if not BGD.is_file():
        raise RuntimeError(f"{BGD.relative_to(REPO_ROOT)} is missing: run ci/bootstrap")
    port = _free_port()
    config = work / "buildgrid.yml"
    config.write_text(BUILDGRID_CONFIG.format(port=port, cas=cas_folder(work)))
    log = (work / "buildgrid.log").open("wb")
    server = subprocess.Popen(
        [str(BGD), "server", "start", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"BuildGrid exited with {server.returncode}: "
                    + (work / "buildgrid.log").read_text()[-2000:]
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"BuildGrid did not listen on port {port} in {timeout} s")
                time.sleep(0.5)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def cas_folder(work: Path) -> Path:
    """Where the BuildGrid started by ``buildgrid(work)`` keeps its CAS."""
    return work / "buildgrid-cas"


def cas_bytes(work: Path) -> int:
    """How many bytes that CAS holds."""
    return sum(p.stat().st_size for p in cas_folder(work).rglob("*") if p.is_file())


def git_clone(source: Path, destination: Path) -> Path:
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(source), str(destination)], check=True
    )
    return destination


@dataclass(frozen=True)
class PantsRun:
    returncode: int
    seconds: float
    spawned: Counter[str]  # process description -> times started locally
    counters: Mapping[str, int]  # Pants' --stats-log counters
    output: str

    @property
    def model_processes(self) -> int:
        return sum(n for d, n in self.spawned.items() if MODEL_PROCESS.match(d))


def run_pants(
    clone: Path,
    *goals_and_specs: str,
    remote: str,
    write: bool,
    env: Mapping[str, str],
    timeout: float = 1800.0,
) -> PantsRun:
    """./pants in ``clone`` with its own empty caches and the remote cache at ``remote``."""
    caches = clone.parent / f"{clone.name}-pants-caches"
    argv = [
        str(clone / "pants"),
        "--no-pantsd",
        "--no-watch-filesystem",
        "--no-dynamic-ui",
        f"--local-store-dir={caches}/lmdb_store",
        f"--named-caches-dir={caches}/named_caches",
        f"--remote-store-address={remote}",
        "--remote-cache-read",
        f"--{'' if write else 'no-'}remote-cache-write",
        "--stats-log",
        "--log-levels-by-target={'process_execution::local': 'debug'}",
        *goals_and_specs,
    ]
    started = time.monotonic()
    completed = subprocess.run(
        argv, cwd=clone, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    seconds = time.monotonic() - started
    output = completed.stdout + completed.stderr
    (clone.parent / f"{clone.name}-pants.log").write_text(output)
    return PantsRun(
        returncode=completed.returncode,
        seconds=seconds,
        spawned=Counter(SPAWNED.findall(output)),
        counters={k: int(v) for k, v in COUNTER.findall(output)},
        output=output,
    )


def clone_env(home: Path, aws_key: str) -> dict[str, str]:
    """A clone's environment: an empty HOME, fake AWS credentials, the checkout's .venv and
    ./pants' own setup shared (neither is part of any cache key)."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
            "PIP_CERT", "CURL_CA_BUNDLE", "PIP_FIND_LINKS", "UV_NATIVE_TLS")  # fmt: skip
    pants_cache = os.environ.get("MMETOOLS_PANTS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmetools-pants"
    )
    return {
        **{k: os.environ[k] for k in keep if k in os.environ},
        "HOME": str(home),
        "MMETOOLS_PANTS_CACHE": pants_cache,
        "PANTS_MMETOOLS_VENV": str(REPO_ROOT / ".venv"),
        "AWS_ACCESS_KEY_ID": aws_key,
        "AWS_SECRET_ACCESS_KEY": f"{aws_key}-secret",
    }


def artifacts(clone: Path) -> dict[str, bytes]:
    """dist/'s artifacts and sidecars (not the reports) by name."""
    dist = clone / "dist"
    return {p.name: p.read_bytes() for p in sorted(dist.glob("*")) if p.is_file()}
