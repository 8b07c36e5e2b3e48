"""``mmetools endpoint ...``: a local SageMaker multi-model endpoint and its capacity plan.

``serve`` runs until SIGINT or SIGTERM, then stops the HTTP server, unloads the models, stops
Triton and removes its temporary folders; registered by :mod:`mmetools.cli`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated, Optional

import typer

from mmetools.cli.app import TritonModeOption, console

endpoint_app = typer.Typer(
    help="A SageMaker multi-model endpoint on this machine, and capacity plans for real ones.",
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
