"""``mmetools endpoint serve|capacity``: a local SageMaker multi-model endpoint and the capacity
plan of a fleet run (``endpoint plan|apply|status`` of the declared endpoints: :mod:`.deploy`).

``serve`` runs until SIGINT or SIGTERM, then stops the HTTP server, unloads the models, stops
Triton and removes its temporary folders; registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Optional

import typer

from mmetools.cli.app import TritonModeOption, console, status_while

endpoint_app = typer.Typer(
    help="The declared SageMaker endpoints (plan, apply, status), a local multi-model endpoint "
    "(serve), and capacity plans from fleet runs (capacity).",
    no_args_is_help=True,
)


def serve_command(
    models_from: Annotated[
        str,
        typer.Option(
            "--models-from",
            help="The endpoint's model prefix: s3://bucket/prefix (AWS_ENDPOINT_URL for moto), "
            "file:///folder or file:relative/folder, as publish writes them.",
            show_default=False,
        ),
    ],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: a free port.")] = 0,
    instance_memory: Annotated[
        float,
        typer.Option(
            "--instance-memory",
            min=0.01,
            help="GiB of the emulated instance; models are unloaded (least recently used "
            "first) to stay within it, minus what Triton itself takes.",
        ),
    ] = 16.0,
    model_budget_mb: Annotated[
        Optional[int],
        typer.Option("--model-budget-mb", min=1, help="MiB for models (overrides the default)."),
    ] = None,
    wait_seconds: Annotated[
        float,
        typer.Option("--wait-seconds", min=0.1, help="Longest wait for a load (SageMaker: 60)."),
    ] = 60.0,
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent", min=1, help="Invocations in progress at most.")
    ] = 64,
    mode: TritonModeOption = None,
) -> None:
    """Serve the artifacts of a prefix through the SageMaker Runtime API on 127.0.0.1: models
    load on first invocation into one Triton (SageMaker frontend), least recently used ones are
    unloaded under the memory budget. Prints the URL when ready; stops on Ctrl-C or SIGTERM."""
    from mmetools.core.settings import load_settings
    from mmetools.serving.endpoint import EndpointOptions, serve_local_endpoint

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("boto3", "botocore", "s3transfer", "urllib3", "werkzeug"):
            logging.getLogger(name).setLevel(logging.WARNING)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    options = EndpointOptions(
        instance_memory_gib=instance_memory,
        port=port,
        model_budget_bytes=model_budget_mb * 1024 * 1024 if model_budget_mb else None,
        wait_seconds=wait_seconds,
        max_concurrent=max_concurrent,
    )
    stop = None
    try:
        endpoint, stop = serve_local_endpoint(load_settings(), models_from, options, mode=mode)
        budget = endpoint.cache.budget_bytes if endpoint.cache is not None else 0
        console.print(
            f"endpoint ready: {endpoint.url} (models from {endpoint.source_uri}, model budget "
            f"{budget / 2**20:.0f} MiB)",
            markup=False,
            soft_wrap=True,
        )
        console.print(
            f"  boto3: AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={endpoint.url}; metrics: "
            f"{endpoint.url}/admin/metrics (JSON), {endpoint.url}/admin/metrics/prometheus",
            markup=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        while not stop_requested.wait(0.5):
            pass
        console.print("stopping the endpoint", markup=False)
    finally:
        try:
            if stop is not None:
                stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def fleet_loadtest(
    endpoint: str,
    *,
    endpoint_url: str,
    models: str,
    prefix: str,
    mix: str,
    users: int,
    seconds: float,
    rate: float | None,
    seed: int,
    cold_threshold_ms: float,
    target_hit_ratio: float,
    p99_budget_ms: float,
    out: Path,
) -> None:
    """``mmetools loadtest --endpoint NAME --models ...|--prefix ...``: the fleet run, its report
    (JSON, HTML), and the capacity plan checked against it."""
    import json
    import tempfile

    from mmetools.core.errors import UsageError
    from mmetools.core.settings import load_settings
    from mmetools.rendering.fleet import fleet_lines, plan_lines, write_fleet_html
    from mmetools.serving.fleet import fixture_requests, model_dir_for, run_fleet
    from mmetools.serving.source import ArtifactSource
    from mmetools.serving.traffic import parse_mix

    settings = load_settings()
    if models and prefix:
        raise UsageError("give --models or --prefix, not both")
    if prefix:
        with tempfile.TemporaryDirectory(prefix="mmetools-prefix-") as scratch:
            names = ArtifactSource.from_uri(prefix, settings.root, Path(scratch)).list_models()
        if not names:
            raise UsageError(f"--prefix {prefix}: no *.tar.gz artifacts there")
    else:
        names = [n.strip() for n in models.split(",") if n.strip()]
    traffic = parse_mix(mix, names)
    folders = {name: model_dir_for(name, settings.root) for name in names}
    cached: dict[Path, list[dict[str, object]]] = {}
    requests = {
        name: cached.setdefault(folder, fixture_requests(folder))
        for name, folder in folders.items()
    }
    with status_while(f"fleet load test of {endpoint}: {len(names)} models, {seconds:g} s"):
        result = run_fleet(
            endpoint, endpoint_url, traffic, requests, users=users, seconds=seconds, rate=rate,
            seed=seed, cold_threshold_ms=cold_threshold_ms,
        )  # fmt: skip
    plan = _plan_from_run(result, target_hit_ratio, p99_budget_ms)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / f"{endpoint}.fleet.json", out / f"{endpoint}.fleet.html"
    document = {**result.as_json(), "plan": plan.as_json() if plan is not None else None}
    json_path.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    write_fleet_html(result, plan, html_path)
    for line in fleet_lines(result):
        console.print(line, markup=False, soft_wrap=True)
    if plan is not None:
        for line in plan_lines(plan):
            console.print(line, markup=False, soft_wrap=True)
    console.print(f"wrote {json_path} and {html_path}", markup=False)


def _plan_from_run(result: Any, target_hit_ratio: float, p99_budget_ms: float) -> Any:
    from mmetools.serving.capacity import plan_capacity

    if not result.profiles:
        return None  # a real endpoint: no measured memory per model from here
    baseline = int(result.endpoint_metrics.get("memory", {}).get("process_tree_bytes", 0))
    baseline -= int(result.endpoint_metrics.get("memory", {}).get("models_accounted_bytes", 0))
    return plan_capacity(
        result.profiles,
        mix=result.mix.description,
        request_rate=result.step.throughput,
        per_instance_rate=result.step.throughput,
        warm_p99_ms=result.warm.p99_ms if result.warm.requests else 0.0,
        target_hit_ratio=target_hit_ratio,
        p99_budget_ms=p99_budget_ms,
        baseline_bytes=max(baseline, 0),
    )


def capacity_command(
    run: Annotated[Path, typer.Argument(help="A fleet run's <endpoint>.fleet.json.")],
    rate: Annotated[
        Optional[float], typer.Option("--rate", min=0.001, help="Requests/s to plan for.")
    ] = None,
    target_hit_ratio: Annotated[
        float, typer.Option("--target-hit-ratio", min=0.0, max=1.0, help="Share served warm.")
    ] = 0.9,
    p99_budget_ms: Annotated[float, typer.Option("--p99-budget-ms", min=1)] = 500.0,
) -> None:
    """A capacity plan from a fleet run: instances and instance memory for a hit ratio and p99,
    SageMakerVariantInvocationsPerInstance, and ModelCacheSetting."""
    import json

    from mmetools.core.errors import UsageError
    from mmetools.rendering.fleet import plan_lines
    from mmetools.serving.capacity import ModelProfile, plan_capacity

    try:
        document = json.loads(run.read_text(encoding="utf-8"))
        profiles = [ModelProfile(**p) for p in document["profiles"]]
        measured = float(document["step"]["throughput"])
        warm_p99 = document["warm"]["p99_ms"] or 0.0
        mix = str(document["mix"]["description"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{run}: not a fleet run of the local endpoint ({e})") from e
    if not profiles:
        raise UsageError(f"{run}: no measured model profiles (run it against the local endpoint)")
    baseline = (document.get("plan") or {}).get("baseline_bytes", 0)
    plan = plan_capacity(
        profiles, mix=mix, request_rate=rate or measured, per_instance_rate=measured,
        warm_p99_ms=warm_p99, target_hit_ratio=target_hit_ratio, p99_budget_ms=p99_budget_ms,
        baseline_bytes=int(baseline),
    )  # fmt: skip
    for line in plan_lines(plan):
        console.print(line, markup=False, soft_wrap=True)
