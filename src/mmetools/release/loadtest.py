"""``mmetools loadtest``: cold start, warm latency and throughput through the SageMaker frontend.

Locally the artifact (or model folder) is loaded into Triton's SageMaker frontend as a
multi-model endpoint does: cold start is the tarball's unpack, the ``POST /models`` load, and the
first request; the server's and its stubs' memory is sampled before and after the load. Then
locust (in its own process, see :mod:`mmetools.release.locustfile`) sends the fixtures' requests at
rising concurrency (closed loop) and at fixed request rates. Against a real endpoint
(``--endpoint NAME --target-model X``) the same steps go through boto3
``sagemaker-runtime.invoke_endpoint``; there is no cold start or memory to measure from here.

The suggested ``SageMakerVariantInvocationsPerInstance`` target (invocations per minute per
instance): the highest measured throughput among steps with no errors whose p99 stays within
``--p99-budget-ms``, times a safety factor (AWS's guidance: 0.5), times 60.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmetools.release.loadtest_options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_SAFETY_FACTOR,
    check_loadtest_options,
)
from mmetools.testing.loaded_models import staged_model_folder
from mmetools.core.errors import LoadTestError, UsageError
from mmetools.model.cases import EnsembleSignature, FixtureCase, load_fixtures
from mmetools.testing.memory import Fit, MemorySample, models_per_instance, sample_process_tree
from mmetools.model.folder import ModelFolder, model_folder, own_folder, parse_artifact_name
from mmetools.testing.artifact_test import (
    MmeClient,
    emulated_target,
    packed_env_steps,
    request_body,
    unpack_for_server,
)
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.core.settings import Settings
from mmetools.testing.triton import SAGEMAKER, TritonServer, resolve_mode

logger = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST_GRACE = 60.0  # seconds beyond the run time before a locust process is given up on

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True)
class LoadStep:
    """One locust run: ``users`` closed-loop users, or paced to ``target_rate`` requests/s."""

    label: str
    users: int
    target_rate: float | None
    seconds: float
    requests: int
    failures: int
    throughput: float  # requests/s
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


@dataclass(frozen=True)
class ColdStart:
    unpack_seconds: float  # SageMaker's part: the tarball unpacked into the model folder
    load_seconds: float  # POST /models until Triton answered (every step loaded)
    first_request_seconds: float
    memory_before: MemorySample | None = None
    memory_after: MemorySample | None = None

    @property
    def total_seconds(self) -> float:
        return self.unpack_seconds + self.load_seconds + self.first_request_seconds


@dataclass(frozen=True)
class Suggestion:
    invocations_per_instance: int | None
    throughput: float | None
    step: str | None
    method: str


@dataclass(frozen=True)
class LoadTestResult:
    model: str
    source: str
    target: str  # "local SageMaker frontend (Triton ...)" or "endpoint NAME"
    cold_start: ColdStart | None
    steps: tuple[LoadStep, ...]
    suggestion: Suggestion
    p99_budget_ms: float
    fit: Fit | None = None
    requests_per_step: tuple[str, ...] = field(default=())  # the fixture cases sent


# ------------------------------------------------------------------------------------------------
# Locust, in its own process


def _write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps(config), encoding="utf-8")


def encoded_requests(cases: Sequence[FixtureCase], outputs: Sequence[str]) -> list[dict[str, str]]:
    """Every case as the invoke request SageMaker forwards (body base64, content type)."""
    encoded = []
    for case in cases:
        body, content_type = request_body(case, outputs)
        encoded.append({"body": base64.b64encode(body).decode(), "content_type": content_type})
    return encoded


def parse_locust_stats(path: Path) -> dict[str, float]:
    """The 'Aggregated' row of locust's ``--csv`` ``_stats.csv``."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError as e:
        raise LoadTestError(f"locust wrote no statistics ({path.name} is missing)") from e
    for row in rows:
        if row.get("Name") == "Aggregated":

            def number(key: str) -> float:
                value = row.get(key, "")
                return float(value) if value not in ("", "N/A") else math.nan

            return {
                "requests": number("Request Count"),
                "failures": number("Failure Count"),
                "throughput": number("Requests/s"),
                "p50_ms": number("50%"),
                "p90_ms": number("90%"),
                "p99_ms": number("99%"),
                "mean_ms": number("Average Response Time"),
            }
    raise LoadTestError(f"{path}: no 'Aggregated' row")


def parse_locust_exceptions(path: Path) -> list[str]:
    """Exceptions raised inside locust users (locust logs them and carries on, sending nothing:
    a run that measured nothing must not look like an idle model)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [
            f"{row.get('Message', '')} ({row.get('Count', '?')}x)\n{row.get('Traceback', '')}"
            for row in csv.DictReader(f)
        ]


def run_locust(
    config: dict[str, Any],
    users: int,
    seconds: float,
    work: Path,
    *,
    rate: float | None = None,
    label: str = "",
    extra_env: dict[str, str] | None = None,
    locustfile: Path = LOCUSTFILE,
) -> LoadStep:
    """One headless locust run of ``users`` users for ``seconds``; ``rate`` paces them to that
    many requests/s in total; ``locustfile`` is the user (fleet tests have their own)."""
    step = work / uuid.uuid4().hex[:8]
    step.mkdir(parents=True)
    config_path = step / "config.json"
    _write_config(config_path, config)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--stop-timeout",
        "10",
        "--csv",
        str(step / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    env = {
        **os.environ,
        "MMETOOLS_LOADTEST_CONFIG": str(config_path),
        "MMETOOLS_LOADTEST_RATE": str(rate / users) if rate else "0",
        "MMETOOLS_LOADTEST_SECONDS": str(seconds),
        **(extra_env or {}),
    }
    try:
        completed = subprocess.run(
            argv,
            cwd=step,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=seconds + LOCUST_GRACE,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise LoadTestError(f"locust did not finish within {seconds + LOCUST_GRACE:.0f} s") from e
    if completed.returncode != 0:
        raise LoadTestError(
            f"locust exited with code {completed.returncode}:\n"
            + (completed.stderr or completed.stdout)[-2000:]
        )
    exceptions = parse_locust_exceptions(step / "locust_exceptions.csv")
    if exceptions:
        raise LoadTestError(f"the locust users raised: {exceptions[0]}")
    stats = parse_locust_stats(step / "locust_stats.csv")
    result = LoadStep(
        label or (f"rate {rate:g}/s" if rate else f"concurrency {users}"),
        users,
        rate,
        seconds,
        int(stats["requests"]),
        int(stats["failures"]),
        stats["throughput"],
        stats["p50_ms"],
        stats["p90_ms"],
        stats["p99_ms"],
        stats["mean_ms"],
    )
    if result.requests == 0:
        raise LoadTestError(
            f"{result.label}: no request completed in {seconds:g} s (make --seconds longer, "
            "or the target answers nothing)"
        )
    logger.info(
        "%s: %d requests, %d errors, %.1f requests/s, p50 %.0f ms, p99 %.0f ms",
        result.label,
        result.requests,
        result.failures,
        result.throughput,
        result.p50_ms,
        result.p99_ms,
    )
    return result


def suggest_target(
    steps: Sequence[LoadStep], p99_budget_ms: float, safety_factor: float
) -> Suggestion:
    """The highest throughput among error-free steps with p99 within budget -> invocations per
    minute per instance, scaled by the safety factor."""
    method = (
        f"highest measured throughput with no errors and p99 <= {p99_budget_ms:g} ms, "
        f"x safety factor {safety_factor:g}, x 60 s (SageMakerVariantInvocationsPerInstance "
        "counts invocations per minute per instance)"
    )
    good = [
        s
        for s in steps
        if s.failures == 0
        and s.requests > 0
        and not math.isnan(s.p99_ms)
        and s.p99_ms <= p99_budget_ms
    ]
    if not good:
        return Suggestion(None, None, None, method + ": no step met the budget")
    best = max(good, key=lambda s: s.throughput)
    return Suggestion(
        max(1, math.floor(best.throughput * safety_factor * 60)),
        best.throughput,
        best.label,
        method,
    )


# ------------------------------------------------------------------------------------------------
# The local SageMaker frontend


def _model_and_candidate(target: Path) -> tuple[ModelFolder, Path | None]:
    """(model folder, tarball or None) for ``ARTIFACT|models/NAME``."""
    if not target.exists():
        raise UsageError(f"{target}: no such artifact or model folder")
    if target.is_dir():
        return model_folder(target), None
    ref = parse_artifact_name(target)
    from mmetools.core.settings import find_root

    folder = find_root() / "models" / ref.name
    if not folder.is_dir():
        raise UsageError(f"{target}: no model folder {folder} for its fixtures")
    return model_folder(folder), target


def _cases(model: ModelFolder) -> tuple[list[FixtureCase], list[str]]:
    signature = EnsembleSignature.from_config(model.ensemble().config)
    cases = [replace(c, expected=()) for c in load_fixtures(model)]
    return cases, list(signature.outputs)


def loadtest_local(
    target: Path,
    settings: Settings,
    *,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    rates: Sequence[float] = (),
    seconds: float = 10.0,
    p99_budget_ms: float = 500.0,
    safety_factor: float = DEFAULT_SAFETY_FACTOR,
    instance_memory_gib: float | None = None,
    mode: str | None = None,
    progress: Progress | None = None,
) -> LoadTestResult:
    check_loadtest_options(concurrency=concurrency, rates=rates, seconds=seconds,
                           p99_budget_ms=p99_budget_ms, safety_factor=safety_factor,
                           instance_memory_gib=instance_memory_gib)  # fmt: skip
    model, artifact = _model_and_candidate(target)
    cases, outputs = _cases(model)
    env = ensure_serving_env(model.requirements_file, settings.cache_dir)
    target_model = artifact.name if artifact is not None else model.ref().artifact_name
    # Packed envs are built for the serving target: serve them as test --artifact does.
    env_steps = packed_env_steps(artifact, settings) if artifact is not None else ()
    chosen = resolve_mode(settings.triton.mode, mode, None)
    server = TritonServer(
        target_python=emulated_target(settings, chosen, bool(env_steps)),
        mode=chosen,
        frontend=SAGEMAKER,
        python_env=env,
        cache_dir=settings.cache_dir,
        requirements=model.requirements_file if model.requirements_file.is_file() else None,
    )
    total = len(concurrency) + len(rates) + 1
    steps: list[LoadStep] = []
    with server, tempfile.TemporaryDirectory(prefix="mmetools-loadtest-") as scratch:
        assert server.workdir is not None and server.pid is not None
        if progress is not None:
            progress("cold start", 0, total)
        client = MmeClient(server)
        model_id = uuid.uuid4().hex[:16]
        before = sample_process_tree(server.pid)
        begin = time.perf_counter()
        if artifact is not None:
            folder = server.workdir / model_id / "model"
            unpack_for_server(server, artifact, folder, env_steps)
        else:
            folder = staged_model_folder(server, model)
        unpacked = time.perf_counter() - begin
        names = sorted(p.name for p in folder.iterdir() if p.is_dir())
        load_seconds = client.load(model_id, folder, target_model, names).seconds_or_raise()
        after = sample_process_tree(server.pid)
        begin = time.perf_counter()
        client.invoke(model_id, target_model, cases[0], outputs)
        first = time.perf_counter() - begin
        cold = ColdStart(unpacked, load_seconds, first, before, after)
        config = {
            "kind": "mme",
            "host": server.base_url,
            "path": f"/models/{model_id}/invoke",
            "target_model": target_model,
            "requests": encoded_requests(cases, outputs),
        }
        work = Path(scratch)
        for users in concurrency:
            if progress is not None:
                progress(f"concurrency {users}", len(steps) + 1, total)
            steps.append(run_locust(config, users, seconds, work))
        for rate in rates:
            if progress is not None:
                progress(f"rate {rate:g}/s", len(steps) + 1, total)
            users = max(1, min(max(concurrency, default=1), math.ceil(rate)))
            steps.append(run_locust(config, users, seconds, work, rate=rate))
        client.unload(model_id, target_model)
        if progress is not None:
            progress("done", total, total)
    fit = None
    if instance_memory_gib is not None:
        fit = models_per_instance(before, after, instance_memory_gib)
    return LoadTestResult(
        model.name,
        str(target),
        f"local SageMaker frontend (Triton {settings.triton.version}, {server.mode})",
        cold,
        tuple(steps),
        suggest_target(steps, p99_budget_ms, safety_factor),
        p99_budget_ms,
        fit,
        tuple(c.name for c in cases),
    )


def endpoint_model_folder(target_model: str, given: Path | None, settings: Settings) -> ModelFolder:
    """The model folder whose fixtures a load test of a real endpoint sends: ``given``, else
    ``models/<name>`` of the artifact named by ``target_model``."""
    if given is None:
        ref = parse_artifact_name(Path(target_model))
        given = own_folder(ref.name, settings.root)
    return model_folder(given)


def loadtest_endpoint(
    endpoint: str,
    target_model: str,
    model: ModelFolder,
    *,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    rates: Sequence[float] = (),
    seconds: float = 10.0,
    p99_budget_ms: float = 500.0,
    safety_factor: float = DEFAULT_SAFETY_FACTOR,
    progress: Progress | None = None,
) -> LoadTestResult:
    """The same steps against a deployed endpoint through boto3 ``invoke_endpoint`` (AWS_* /
    AWS_ENDPOINT_URL from the environment, as boto3 reads them)."""
    check_loadtest_options(concurrency=concurrency, rates=rates, seconds=seconds,
                           p99_budget_ms=p99_budget_ms, safety_factor=safety_factor)  # fmt: skip
    cases, outputs = _cases(model)
    config = {
        "kind": "endpoint",
        "endpoint": endpoint,
        "target_model": target_model,
        "requests": encoded_requests(cases, outputs),
    }
    total = len(concurrency) + len(rates)
    steps: list[LoadStep] = []
    with tempfile.TemporaryDirectory(prefix="mmetools-loadtest-") as scratch:
        for users in concurrency:
            if progress is not None:
                progress(f"concurrency {users}", len(steps), total)
            steps.append(run_locust(config, users, seconds, Path(scratch)))
        for rate in rates:
            if progress is not None:
                progress(f"rate {rate:g}/s", len(steps), total)
            users = max(1, min(max(concurrency, default=1), math.ceil(rate)))
            steps.append(run_locust(config, users, seconds, Path(scratch), rate=rate))
    return LoadTestResult(
        model.name,
        f"{endpoint}/{target_model}",
        f"endpoint {endpoint}",
        None,
        tuple(steps),
        suggest_target(steps, p99_budget_ms, safety_factor),
        p99_budget_ms,
        None,
        tuple(c.name for c in cases),
    )


def result_json(result: LoadTestResult) -> dict[str, Any]:
    cold = result.cold_start
    return {
        "model": result.model,
        "source": result.source,
        "target": result.target,
        "requests": list(result.requests_per_step),
        "cold_start": (
            None
            if cold is None
            else {
                "unpack_seconds": cold.unpack_seconds,
                "load_seconds": cold.load_seconds,
                "first_request_seconds": cold.first_request_seconds,
                "total_seconds": cold.total_seconds,
                "memory_before": cold.memory_before.as_json() if cold.memory_before else None,
                "memory_after": cold.memory_after.as_json() if cold.memory_after else None,
            }
        ),
        "steps": [s.__dict__ for s in result.steps],
        "p99_budget_ms": result.p99_budget_ms,
        "suggestion": result.suggestion.__dict__,
        "instance_fit": result.fit.as_json() if result.fit else None,
    }
