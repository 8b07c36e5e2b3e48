"""The SageMaker Runtime API of a local endpoint, as a WSGI application (werkzeug).

Routes (botocore's ``sagemaker-runtime`` service model, protocol rest-json):

- ``POST /endpoints/{EndpointName}/invocations``: InvokeEndpoint; the TargetModel travels in
  ``X-Amzn-SageMaker-Target-Model``, the body is the request as the model takes it;
- ``GET /ping``: 200 once the endpoint serves (readiness);
- ``GET /admin/metrics`` (JSON), ``GET /admin/metrics/prometheus`` (text), ``GET /admin/models``.

Errors are answered as rest-json services answer them, so botocore raises the modeled
exception: the status of the error shape, ``x-amzn-ErrorType: <Code>`` and a JSON body with a
``message``. docs/endpoint.md lists each status with its AWS source.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from mmetools.serving.metrics import prometheus_text

if TYPE_CHECKING:
    from mmetools.serving.endpoint import LocalEndpoint

logger = logging.getLogger(__name__)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CACHE_HEADER = "X-Mmetools-Model-Cache"  # hit | miss: what the request found (not AWS's)
WAIT_HEADER = "X-Mmetools-Model-Wait-Ms"
VARIANT = "AllTraffic"
MAX_BODY = 6 * 1024 * 1024  # InvokeEndpoint payloads are limited to 6 MB


@dataclass(frozen=True)
class ApiError(Exception):
    """An error as the SageMaker Runtime answers it."""

    status: int
    code: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)

    def response(self) -> Response:
        body = {"message": self.message, **self.extra}
        return Response(
            json.dumps(body),
            status=self.status,
            content_type="application/json",
            headers={"x-amzn-ErrorType": self.code, "x-amzn-RequestId": str(uuid.uuid4())},
        )


def validation_error(message: str) -> ApiError:
    return ApiError(400, "ValidationError", message)


def model_error(status: int, message: str, log_stream: str = "") -> ApiError:
    """What SageMaker answers when the container answered ``status`` (ModelError, 424)."""
    side = "client" if 400 <= status < 500 else "server"
    return ApiError(
        424,
        "ModelError",
        f'Received {side} error ({status}) from primary with message "{message}". '
        f"See {log_stream or 'the endpoint log'} for more information.",
        {"OriginalStatusCode": status, "OriginalMessage": message, "LogStreamArn": log_stream},
    )


@dataclass(frozen=True)
class Invocation:
    status: int
    body: bytes
    content_type: str
    cache_state: str
    wait_seconds: float


class RuntimeApi:
    """The WSGI app; ``endpoint`` does the work (cache, model server, metrics)."""

    def __init__(self, endpoint: LocalEndpoint) -> None:
        self.endpoint = endpoint
        self.routes = Map(
            [
                Rule("/endpoints/<name>/invocations", endpoint="invoke", methods=["POST"]),
                Rule("/ping", endpoint="ping", methods=["GET"]),
                Rule("/admin/metrics", endpoint="metrics", methods=["GET"]),
                Rule("/admin/metrics/prometheus", endpoint="prometheus", methods=["GET"]),
                Rule("/admin/models", endpoint="models", methods=["GET"]),
            ]
        )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.routes.bind_to_environ(request.environ)
        try:
            name, arguments = adapter.match()
            handler = getattr(self, f"on_{name}")
            return handler(request, **arguments)  # type: ignore[no-any-return]
        except ApiError as e:
            return e.response()
        except NotFound:
            return ApiError(404, "UnknownOperationException", f"no route {request.path}").response()
        except HTTPException as e:
            return ApiError(e.code or 400, "ValidationError", e.description or str(e)).response()
        except Exception as e:  # a bug: the client gets InternalFailure, the log the traceback
            logger.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "InternalFailure", f"internal error: {e}").response()

    def on_ping(self, request: Request) -> Response:
        ready = self.endpoint.ready()
        return Response("" if ready else "starting", status=200 if ready else 503)

    def on_invoke(self, request: Request, name: str) -> Response:
        target_model = request.headers.get(TARGET_MODEL_HEADER, "")
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise validation_error(
                f"Request payload of {length} bytes exceeds the 6 MB limit of InvokeEndpoint"
            )
        body = request.get_data(cache=False)
        result = self.endpoint.invoke(
            name,
            target_model,
            body,
            request.headers.get("Content-Type", "application/octet-stream"),
            request.headers.get("Accept", ""),
        )
        return Response(
            result.body,
            status=200,
            content_type=result.content_type,
            headers={
                "x-Amzn-Invoked-Production-Variant": VARIANT,
                "x-amzn-RequestId": str(uuid.uuid4()),
                CACHE_HEADER: result.cache_state,
                WAIT_HEADER: f"{result.wait_seconds * 1000:.1f}",
            },
        )

    def on_metrics(self, request: Request) -> Response:
        if request.args.get("format") == "prometheus":
            return self.on_prometheus(request)
        return Response(_json(self.endpoint.metrics.snapshot()), content_type="application/json")

    def on_prometheus(self, request: Request) -> Response:
        return Response(
            prometheus_text(self.endpoint.metrics.snapshot()),
            content_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def on_models(self, request: Request) -> Response:
        return Response(_json(self.endpoint.models_document()), content_type="application/json")


def _json(document: Any) -> str:
    """JSON without NaN (not JSON): None instead."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(document), indent=1, sort_keys=True)
