"""The HTTP conversation with a server: one request, inference tensors in and out (KServe v2,
binary), and its values (responses, load results). :class:`~.server.TritonServer` holds the
process; this module only talks to it."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mmetools.core.errors import TritonError

logger = logging.getLogger(__name__)


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


def send_request(
    url: str,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
    timeout: float,
) -> HttpResponse:
    """One HTTP request. Error statuses are returned, not raised; OSError when the connection
    fails."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResponse(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, e.read(), dict(e.headers))
    except http.client.HTTPException as e:  # the server dropped the connection
        raise ConnectionError(str(e)) from e


def infer_inputs(
    model: str, inputs: Mapping[str, npt.NDArray[Any]], datatypes: Mapping[str, str] | None
) -> list[Any]:
    """tritonclient's binary input tensors; datatypes default from the arrays."""
    import tritonclient.http as httpclient

    from mmetools.model.cases import datatype_of_array

    request_inputs = []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = (datatypes or {}).get(name) or datatype_of_array(array)
        if datatype is None:
            raise TritonError(f"{model}: input '{name}' has unsupported dtype {array.dtype}")
        if datatype == "BYTES" and array.dtype.kind != "O":
            array = array.astype(np.object_)
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        request_inputs.append(tensor)
    return request_inputs


def requested_outputs(names: Sequence[str]) -> list[Any]:
    import tritonclient.http as httpclient

    return [httpclient.InferRequestedOutput(name, binary_data=True) for name in names]


def output_arrays(result: Any, names: Sequence[str], model: str) -> dict[str, Any]:
    """``{name: result.as_numpy(name)}``; TritonError naming the output and both shapes when the
    data does not fill the shape it claims (a step that returned an empty tensor for a declared
    output made tritonclient raise "cannot reshape array of size 0 into shape (1,16)")."""
    arrays: dict[str, Any] = {}
    for name in names:
        try:
            arrays[name] = result.as_numpy(name)
        except ValueError as e:
            output = result.get_output(name) or {}
            shape = list(output.get("shape", []))
            raise TritonError(
                f"{model}: output '{name}' claims shape {shape} ({output.get('datatype')}) but "
                f"its data does not fill it ({e}): the step producing '{name}' returned a tensor "
                "of another size (an empty one?) than the shape it declared"
            ) from e
    return arrays
