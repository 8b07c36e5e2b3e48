"""The locust user of fleet load tests (``mmetools loadtest --endpoint NAME --models ...``), in a
locust process of its own (never imported by mmetools: ``import locust`` patches the standard
library with gevent).

The run is described by the JSON file named in ``MMETOOLS_LOADTEST_CONFIG``::

    {"endpoint": "NAME", "endpoint_url": "http://127.0.0.1:P" or "", "seed": 0,
     "log": "<file>", "models": [{"target_model": "...", "share": 0.3,
        "requests": [{"body": <base64>, "content_type": "...", "expected": [
            {"name": "...", "datatype": "FP32", "shape": [1, 2], "data": [...],
             "atol": 1e-4, "rtol": 1e-3}]}]}]}

Each request picks a TargetModel by its share (seeded), sends the next of that model's fixture
requests through unchanged boto3 ``invoke_endpoint`` (the client's default retries included)
and checks the answer against the fixture's expected outputs. Every request is written to the
log as one JSON line: start, model, cache state (the local endpoint's header; "" elsewhere),
milliseconds, error, and whether the outputs matched.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import time
from typing import Any

import gevent
import numpy as np
from locust import User, constant, constant_throughput, events, task
from locust.env import Environment

_CONFIG: dict[str, Any] = json.loads(
    open(os.environ["MMETOOLS_LOADTEST_CONFIG"], encoding="utf-8").read()
)
_RATE = float(os.environ.get("MMETOOLS_LOADTEST_RATE", "0"))
_SECONDS = float(os.environ.get("MMETOOLS_LOADTEST_SECONDS", "0"))
_NAMES = [m["target_model"] for m in _CONFIG["models"]]
_SHARES = [float(m["share"]) for m in _CONFIG["models"]]
_REQUESTS = {
    m["target_model"]: itertools.cycle(
        [(base64.b64decode(r["body"]), r["content_type"], r["expected"]) for r in m["requests"]]
    )
    for m in _CONFIG["models"]
}
_RANDOM = random.Random(int(_CONFIG.get("seed", 0)))
_LOG: list[str] = []
_BEGIN = time.monotonic()
BINARY = "application/vnd.sagemaker-triton.binary+json;json-header-size="


def _stop_after_duration(environment: Environment, **_: Any) -> None:
    """The run's duration on the monotonic clock (see release/locustfile.py for why)."""
    if _SECONDS <= 0:
        return

    def stop() -> None:
        end = time.monotonic() + _SECONDS
        while time.monotonic() < end:
            gevent.sleep(0.05)
        assert environment.runner is not None
        environment.runner.quit()

    gevent.spawn(stop)


def _write_log(environment: Environment, **_: Any) -> None:
    with open(_CONFIG["log"], "w", encoding="utf-8") as f:
        f.write("\n".join(_LOG) + ("\n" if _LOG else ""))


events.test_start.add_listener(_stop_after_duration)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_write_log)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write_log)  # type: ignore[no-untyped-call]

_CLIENTS: list[Any] = []


def _client() -> Any:
    if not _CLIENTS:
        import boto3

        url = _CONFIG.get("endpoint_url") or None
        session = boto3.session.Session()
        options: dict[str, Any] = {"endpoint_url": url}
        if url is not None:
            # The local endpoint checks no signature: any region and credentials do.
            options["region_name"] = session.region_name or "us-east-1"
            if session.get_credentials() is None:
                options.update(aws_access_key_id="local", aws_secret_access_key="local")
        _CLIENTS.append(session.client("sagemaker-runtime", **options))
    return _CLIENTS[0]


_client()  # before the run: creating a client takes seconds on a busy machine


def _mismatch(body: bytes, content_type: str, expected: list[dict[str, Any]]) -> str:
    """'' when every expected output is in the answer within its tolerance, else why not."""
    import tritonclient.http as httpclient

    length = int(content_type[len(BINARY) :]) if content_type.startswith(BINARY) else None
    try:
        result = httpclient.InferenceServerClient.parse_response_body(body, header_length=length)
    except Exception as e:
        return f"unreadable answer: {e}"
    for output in expected:
        actual = result.as_numpy(output["name"])
        if actual is None:
            return f"no output {output['name']}"
        if output["datatype"] == "BYTES":
            want = np.array([base64.b64decode(v) for v in output["data"]], dtype=object)
            got = np.array([v if isinstance(v, bytes) else str(v).encode() for v in actual.ravel()])
            if list(got) != list(want):
                return f"{output['name']}: {list(got)[:4]} != {list(want)[:4]}"
            continue
        want_n = np.asarray(output["data"], dtype=np.float64)
        got_n = np.asarray(actual, dtype=np.float64).ravel()
        if got_n.shape != want_n.shape:
            return f"{output['name']}: shape {got_n.shape} != {want_n.shape}"
        error = np.abs(got_n - want_n)
        within = (error <= output["atol"] + output["rtol"] * np.abs(want_n)) | (got_n == want_n)
        if not bool(np.all(within | (np.isnan(got_n) & np.isnan(want_n)))):
            return f"{output['name']}: {got_n[:4].tolist()} != {want_n[:4].tolist()}"
    return ""


class FleetUser(User):
    wait_time = constant_throughput(_RATE) if _RATE > 0 else constant(0)

    @task
    def invoke(self) -> None:
        target = _RANDOM.choices(_NAMES, _SHARES)[0]
        body, content_type, expected = next(_REQUESTS[target])
        start = time.monotonic()
        error: Exception | None = None
        state = mismatch = ""
        length = 0
        try:
            answer = _client().invoke_endpoint(
                EndpointName=_CONFIG["endpoint"],
                TargetModel=target,
                ContentType=content_type,
                Body=body,
            )
            data = answer["Body"].read()
            length = len(data)
            headers = answer["ResponseMetadata"].get("HTTPHeaders", {})
            state = headers.get("x-mmetools-model-cache", "")
            mismatch = _mismatch(data, answer.get("ContentType", ""), expected)
            if mismatch:
                error = AssertionError(f"{target}: {mismatch}")
        except Exception as e:  # counted by locust and logged, never stops the run
            error = e
        milliseconds = (time.monotonic() - start) * 1000
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "") if error else ""
        _LOG.append(
            json.dumps(
                {
                    "t": start - _BEGIN,
                    "model": target,
                    "state": state,
                    "ms": milliseconds,
                    "error": (code or type(error).__name__) if error else "",
                    "message": str(error)[:300] if error else "",
                    "outputs_ok": error is None,
                }
            )
        )
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="invoke_endpoint",
            name="invoke",
            response_time=milliseconds,
            response_length=length,
            exception=error,
            context={},
        )
