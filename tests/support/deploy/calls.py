"""What a stage's boto3 clients send, counted by botocore's own events (not by mmetools)."""

from __future__ import annotations

from typing import Any

from mmetools.deploy.stage import StageSession

READS = ("Describe", "List", "Get")


def mutating_calls(stage: StageSession) -> list[str]:
    """Every AWS operation the stage's clients send from now on, except reads."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        if not model.name.startswith(READS):
            calls.append(model.name)

    for client in (stage.clients.sagemaker, stage.clients.autoscaling, stage.s3):
        client.meta.events.register("before-call.*.*", record)
    return calls
