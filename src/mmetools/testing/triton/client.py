"""Values of the HTTP conversation with a server: responses and load results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


from mmetools.core.errors import TritonError


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def error_text(self) -> str:
        try:
            document = self.json()
        except (ValueError, UnicodeDecodeError):
            document = None
        if isinstance(document, dict) and "error" in document:
            return str(document["error"])
        return self.body.decode("utf-8", "replace").strip() or f"HTTP {self.status}"


@dataclass(frozen=True)
class LoadResult:
    seconds: float | None
    error: str | None = None
    log_lines: tuple[str, ...] = ()

    def seconds_or_raise(self) -> float:
        if self.seconds is None:
            log = "\nTriton log:\n" + "\n".join(self.log_lines) if self.log_lines else ""
            raise TritonError(f"{self.error}{log}")
        return self.seconds
