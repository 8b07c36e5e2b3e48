"""The locust user that ``mmetools loadtest`` runs, in a locust process of its own (never
imported by mmetools: ``import locust`` monkey-patches the standard library with gevent).

The run is described by a JSON file named in ``MMETOOLS_LOADTEST_CONFIG``:

- ``{"kind": "mme", "host": "http://127.0.0.1:P", "path": "/models/<id>/invoke",
  "target_model": "...", "requests": [{"body": <base64>, "content_type": "..."}]}``:
  POSTs to Triton's SageMaker frontend, as SageMaker's front end forwards an invocation;
- ``{"kind": "endpoint", "endpoint": "NAME", "target_model": "...", "requests": [...]}``:
  boto3 ``sagemaker-runtime.invoke_endpoint`` against a real endpoint.

Each user cycles through the requests; ``MMETOOLS_LOADTEST_RATE`` (requests/s per user) paces
users for fixed-rate steps, otherwise they send back to back (closed loop).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import time
from typing import Any

import gevent
from locust import FastHttpUser, User, constant, constant_throughput, events, task
from locust.env import Environment

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"

_CONFIG: dict[str, Any] = json.loads(
    open(os.environ["MMETOOLS_LOADTEST_CONFIG"], encoding="utf-8").read()
)
_REQUESTS = [(base64.b64decode(r["body"]), r["content_type"]) for r in _CONFIG["requests"]]
_RATE = float(os.environ.get("MMETOOLS_LOADTEST_RATE", "0"))
_WAIT = constant_throughput(_RATE) if _RATE > 0 else constant(0)
_SECONDS = float(os.environ.get("MMETOOLS_LOADTEST_SECONDS", "0"))


def _stop_after_duration(environment: Environment, **_: Any) -> None:
    """The run's duration, on the monotonic clock. (Not --run-time: its gevent timer is set
    from the event loop's cached time, which lags by however long start-up took, so on a busy
    machine it fired before any request was sent.)"""
    if _SECONDS <= 0:
        return

    def stop() -> None:
        end = time.monotonic() + _SECONDS
        while time.monotonic() < end:
            gevent.sleep(0.05)
        assert environment.runner is not None
        environment.runner.quit()

    gevent.spawn(stop)


events.test_start.add_listener(_stop_after_duration)  # type: ignore[no-untyped-call]


class MmeUser(FastHttpUser):
    host = _CONFIG.get("host", "http://127.0.0.1")
    wait_time = _WAIT
    abstract = _CONFIG["kind"] != "mme"

    def on_start(self) -> None:
        self._requests = itertools.cycle(_REQUESTS)

    @task
    def invoke(self) -> None:
        body, content_type = next(self._requests)
        headers = {TARGET_MODEL_HEADER: _CONFIG["target_model"], "Content-Type": content_type}
        with self.client.post(
            _CONFIG["path"],
            data=body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=headers,
            name="invoke",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")


_CLIENTS: list[Any] = []


def _endpoint_client() -> Any:
    """One boto3 client for every user (clients are thread-safe). Created before the run
    starts: creating one takes seconds on a busy machine, which would eat a short step."""
    if not _CLIENTS:
        import boto3

        _CLIENTS.append(boto3.session.Session().client("sagemaker-runtime"))
    return _CLIENTS[0]


if _CONFIG["kind"] == "endpoint":
    _endpoint_client()


class EndpointUser(User):
    wait_time = _WAIT
    abstract = _CONFIG["kind"] != "endpoint"

    def on_start(self) -> None:
        self._requests = itertools.cycle(_REQUESTS)

    @task
    def invoke(self) -> None:
        body, content_type = next(self._requests)
        begin = time.perf_counter()
        error: Exception | None = None
        length = 0
        try:
            answer = _endpoint_client().invoke_endpoint(
                EndpointName=_CONFIG["endpoint"],
                TargetModel=_CONFIG["target_model"],
                ContentType=content_type,
                Body=body,
            )
            length = len(answer["Body"].read())
        except Exception as e:  # every failure is counted by locust, none stops the run
            error = e
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="invoke_endpoint",
            name="invoke",
            response_time=(time.perf_counter() - begin) * 1000,
            response_length=length,
            exception=error,
            context={},
        )
