"""A small faulty HTTP proxy on loopback, in front of moto_server, for fault-injection tests.

It forwards S3 requests unchanged (SigV4 signatures stay valid: the Host header is kept) and,
following a seeded schedule, answers a share of the matching requests with a fault instead:

- ``drop``: read the request, then close the connection without an answer;
- ``500``: ``InternalError``;  ``503``: ``SlowDown`` (S3's throttling answer);
- ``lost``: forward the request, then drop the answer (the write happened; the client can't know);
- ``stall``: hold the request until ``release()`` (then drop it): a hung network, used to kill a
  publisher mid-upload.

Decisions are made in arrival order from ``random.Random(seed)`` and bounded by ``max_faults``,
so a run injects the same number of faults each time.
"""

from __future__ import annotations

import http.client
import random
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
}

Matcher = Callable[[str, str, dict[str, list[str]]], bool]


def any_request(method: str, path: str, query: dict[str, list[str]]) -> bool:
    return True


def upload_parts(method: str, path: str, query: dict[str, list[str]]) -> bool:
    """UploadPart requests: PUT ...?partNumber=N&uploadId=..."""
    return method == "PUT" and "partNumber" in query and "uploadId" in query


@dataclass
class FaultPlan:
    seed: int = 0
    share: float = 0.0  # probability that a matching request gets a fault
    kinds: tuple[str, ...] = ("drop", "500", "503")
    max_faults: int | None = None  # stop injecting after this many
    match: Matcher = any_request
    pass_first: int = 0  # matching requests forwarded untouched before faults may start
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}


class FaultyS3Proxy:
    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.plan = plan or FaultPlan()
        self.stats: Counter[str] = Counter()
        self.stalled = threading.Event()  # set when the first request is stalled
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._matched = 0
        self._faults = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def faults(self) -> int:
        return self._faults

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._matched = 0
            self._faults = 0

    def release(self) -> None:
        self._release.set()

    def start(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultyS3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, method: str, target: str) -> str | None:
        parsed = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        with self._lock:
            plan = self.plan
            if not plan.match(method, parsed.path, query):
                return None
            self._matched += 1
            if self._matched <= plan.pass_first:
                return None
            if plan.max_faults is not None and self._faults >= plan.max_faults:
                return None
            if plan.rng.random() >= plan.share:
                return None
            self._faults += 1
            kind = plan.kinds[plan.rng.randrange(len(plan.kinds))]
            self.stats[kind] += 1
            return kind

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and "Expect: 100-continue", like S3

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass

            def _handle(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raise RuntimeError("chunked request bodies are not supported by the proxy")
                fault = proxy.decide(self.command, self.path)
                body = self._body()
                if fault == "drop":
                    return self._drop()
                if fault == "stall":
                    proxy.stalled.set()
                    proxy._release.wait(timeout=120)
                    return self._drop()
                if fault in _ERRORS:
                    status, code, message = _ERRORS[fault]
                    payload = (
                        '<?xml version="1.0" encoding="UTF-8"?>\n'
                        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return None
                status, headers, payload = self._forward(body)
                if fault == "lost":
                    return self._drop()
                proxy.stats["forwarded"] += 1
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if self.command != "HEAD" and not any(
                    n.lower() == "content-length" for n, _ in headers
                ):
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return None

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=120
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                    return response.status, kept, payload
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


@contextmanager
def faulty_proxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[FaultyS3Proxy]:
    with FaultyS3Proxy(upstream, plan) as proxy:
        yield proxy
