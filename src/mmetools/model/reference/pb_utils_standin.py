"""A stand-in for ``triton_python_backend_utils`` (pb_utils), so that a Python step's model.py
runs outside Triton, and the ``args`` Triton's python backend passes to ``initialize``.

Why a stand-in: the real module is only half Python. Its Tensor, InferenceRequest,
InferenceResponse, TritonError, TritonModelException and Logger are C++ classes that Triton's
compiled ``triton_python_backend_stub`` injects from its embedded ``c_python_backend_utils``
module at start-up (python_backend src/pb_stub.cc, ``Stub::StubSetup``); importing the file
outside the stub leaves them undefined. So :func:`build_pb_utils_module` loads the pure-Python
part (get_input_tensor_by_name, triton_string_to_numpy, get_output_config_by_name, ...) from
the copy shipped in the nvidia-pytriton wheel (same code as on the server) and sets the
pure-Python classes below on it, as the stub does with ``setattr``. They mirror the stub's
behaviour where a model can observe it: a Tensor holds a C-contiguous copy, BYTES become object
arrays of ``bytes`` (str elements utf-8 encoded), unsupported numpy dtypes are refused. BLS calls
(``InferenceRequest.exec``) and decoupled models are not supported.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mmetools.model.config import ModelConfig, is_ensemble

logger = logging.getLogger(__name__)

PB_UTILS_MODULE = "triton_python_backend_utils"
# Where nvidia-pytriton keeps Triton's own copy of the module (pure-Python part).
_PYTRITON_PB_UTILS = ("tritonserver", "backends", "python", f"{PB_UTILS_MODULE}.py")


# --------------------------------------------------------------------------------------------
# Stand-in for the C++ half of triton_python_backend_utils


class TritonModelException(Exception):
    """Stand-in for pb_utils.TritonModelException (a pybind11-registered exception in Triton)."""


class TritonError:
    """Stand-in for pb_utils.TritonError(message, code=TritonError.INTERNAL)."""

    # TRITONSERVER_Error_Code values (tritonserver.h)
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = str(message)
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r})"


_NUMPY_TO_TRITON = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.uint16): "TYPE_UINT16",
    np.dtype(np.uint32): "TYPE_UINT32",
    np.dtype(np.uint64): "TYPE_UINT64",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float64): "TYPE_FP64",
    np.dtype(np.object_): "TYPE_STRING",
}


def as_triton_array(array: Any) -> npt.NDArray[Any]:
    """What a tensor holds after crossing Triton's shared memory: a C-contiguous copy, and for
    BYTES an object array of ``bytes`` (str elements utf-8 encoded, as serialize_byte_tensor)."""
    if not isinstance(array, np.ndarray):
        raise TritonModelException(
            f"pb_utils.Tensor expects a numpy array, got {type(array).__name__}"
        )
    if array.dtype.kind == "S" or array.dtype == np.object_:
        flat = np.empty(array.size, dtype=np.object_)
        flat[:] = [
            item if isinstance(item, bytes) else str(item).encode("utf-8")
            for item in (array.reshape(-1).tolist())
        ]
        return flat.reshape(array.shape)
    if array.dtype not in _NUMPY_TO_TRITON:
        raise TritonModelException(f"NumPy dtype is not supported: {array.dtype}")
    return np.array(array, copy=True, order="C")


class Tensor:
    """Stand-in for pb_utils.Tensor(name, numpy_array): ``name()``, ``as_numpy()``, ..."""

    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        self._name = name
        self._array = as_triton_array(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array

    def shape(self) -> list[int]:
        return [int(d) for d in self._array.shape]

    def triton_dtype(self) -> int:
        from tritonclient.grpc import model_config_pb2

        return int(model_config_pb2.DataType.Value(_NUMPY_TO_TRITON[self._array.dtype]))

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        return self._array.__dlpack__()

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> Tensor:
        return cls(name, np.from_dlpack(capsule))

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, shape={list(self._array.shape)}, dtype={self._array.dtype})"


class InferenceRequest:
    """Stand-in for pb_utils.InferenceRequest as a model's execute() receives it."""

    def __init__(
        self,
        inputs: Sequence[Tensor] = (),
        requested_output_names: Sequence[str] = (),
        model_name: str = "",
        request_id: str = "",
        correlation_id: int | str = 0,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        parameters: Mapping[str, Any] | str | None = None,
        **_: Any,
    ) -> None:
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._model_name = model_name
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self._timeout = timeout
        if parameters is None:
            parameters = {}
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters)

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return self._parameters

    def is_cancelled(self) -> bool:
        return False

    def set_release_flags(self, flags: int) -> None:
        pass

    def exec(self, *_: Any, **__: Any) -> Any:
        raise TritonModelException(
            "BLS (InferenceRequest.exec) is not supported by the mmetools reference runner; "
            "run the model with `mmetools test` (real Triton) instead"
        )

    async_exec = exec

    def get_response_sender(self) -> Any:
        raise TritonModelException(
            "decoupled models (get_response_sender) are not supported by the mmetools "
            "reference runner"
        )


class InferenceResponse:
    """Stand-in for pb_utils.InferenceResponse(output_tensors=[...], error=None)."""

    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self._output_tensors = list(output_tensors)
        self._error = error
        self._parameters = json.dumps(dict(parameters or {}))

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


class Logger:
    """Stand-in for pb_utils.Logger: messages go to Python logging."""

    INFO, WARNING, ERROR, VERBOSE = 0, 1, 2, 3
    _logger = logging.getLogger(f"{__name__}.model")

    @classmethod
    def log(cls, message: str, level: int = 0) -> None:
        levels = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.DEBUG}
        cls._logger.log(levels.get(level, logging.INFO), "%s", message)

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.log(message, cls.INFO)

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.log(message, cls.WARNING)

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.log(message, cls.ERROR)

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.log(message, cls.VERBOSE)


class _ModelDir:
    """pb_utils.get_model_dir(): the version folder of the model being run."""

    current = ""

    def __call__(self) -> str:
        return self.current


def real_pb_utils_path() -> Path | None:
    """Triton's own triton_python_backend_utils.py as shipped in the nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_PYTRITON_PB_UTILS)
        if candidate.is_file():
            return candidate
    return None


def build_pb_utils_module() -> types.ModuleType:
    """A ``triton_python_backend_utils`` module usable outside Triton (see the module docstring)."""
    module = types.ModuleType(PB_UTILS_MODULE)
    source = real_pb_utils_path()
    if source is not None:
        module.__file__ = str(source)
        exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), module.__dict__)
    else:  # pragma: no cover - nvidia-pytriton is a dependency; keep the essentials regardless
        logger.warning(
            "nvidia-pytriton's %s.py not found; using a minimal stand-in", PB_UTILS_MODULE
        )
        _define_pure_helpers(module)
    # What Triton's stub sets from its C++ module c_python_backend_utils (pb_stub.cc StubSetup).
    module.TritonError = TritonError  # type: ignore[attr-defined]
    module.TritonModelException = TritonModelException  # type: ignore[attr-defined]
    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    module.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    module.Logger = Logger  # type: ignore[attr-defined]
    module.get_model_dir = _ModelDir()  # type: ignore[attr-defined]
    module.TRITONSERVER_MEMORY_CPU = 0  # type: ignore[attr-defined]
    module.TRITONSERVER_MEMORY_GPU = 1  # type: ignore[attr-defined]
    module.MMETOOLS_REFERENCE = True  # type: ignore[attr-defined]  # lets a model tell
    return module


def _define_pure_helpers(module: types.ModuleType) -> None:
    """The helpers model.py files use most, for when Triton's file is not available."""
    string_to_numpy: dict[str, Any] = {v: k.type for k, v in _NUMPY_TO_TRITON.items()}
    string_to_numpy["TYPE_BOOL"] = bool

    def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
        return next((t for t in request.inputs() if t.name() == name), None)

    def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
        return next((t for t in response.output_tensors() if t.name() == name), None)

    def get_input_config_by_name(config: Mapping[str, Any], name: str) -> Any:
        return next((t for t in config.get("input", []) if t["name"] == name), None)

    def get_output_config_by_name(config: Mapping[str, Any], name: str) -> Any:
        return next((t for t in config.get("output", []) if t["name"] == name), None)

    def triton_string_to_numpy(name: str) -> Any:
        return string_to_numpy[name]

    for function in (
        get_input_tensor_by_name,
        get_output_tensor_by_name,
        get_input_config_by_name,
        get_output_config_by_name,
        triton_string_to_numpy,
    ):
        setattr(module, function.__name__, function)
    module.TRITON_STRING_TO_NUMPY = string_to_numpy  # type: ignore[attr-defined]


@contextmanager
def installed_pb_utils() -> Iterator[types.ModuleType]:
    """Install the stand-in as ``sys.modules['triton_python_backend_utils']`` for the duration."""
    previous = sys.modules.get(PB_UTILS_MODULE)
    module = build_pb_utils_module()
    sys.modules[PB_UTILS_MODULE] = module
    try:
        yield module
    finally:
        if previous is None:
            sys.modules.pop(PB_UTILS_MODULE, None)
        else:
            sys.modules[PB_UTILS_MODULE] = previous


# --------------------------------------------------------------------------------------------
# The model_config JSON Triton hands to initialize()


def triton_config_json(config: ModelConfig, model_name: str) -> str:
    """The model config as Triton's ModelConfigToJson writes it (model_config_utils.cc): protobuf
    JSON with proto field names and default-valued fields printed, int64 fields as numbers (not
    protobuf's strings), after the parts of Triton's normalization a model.py can observe: name,
    instance groups (default group, names "<model>_<i>", CPU kind, count 1), version policy."""
    normalized = ModelConfig()
    normalized.CopyFrom(config)
    if not normalized.name:
        normalized.name = model_name
    if not normalized.instance_group and not is_ensemble(normalized):
        group = normalized.instance_group.add()
        group.name = normalized.name
        group.count = 1
        group.kind = group.KIND_CPU
    if not normalized.HasField("version_policy") and not is_ensemble(normalized):
        normalized.version_policy.latest.num_versions = 1
    for index, group in enumerate(normalized.instance_group):
        if not group.name:
            group.name = f"{normalized.name}_{index}"
        if group.kind == group.KIND_AUTO:
            group.kind = group.KIND_CPU  # no GPU is used here
        if group.count == 0:
            group.count = 1
    options: dict[str, Any] = {"preserving_proto_field_name": True}
    parameters = inspect.signature(json_format.MessageToDict).parameters
    if "always_print_fields_with_no_presence" in parameters:  # protobuf >= 5.26
        options["always_print_fields_with_no_presence"] = True
    else:  # pragma: no cover - older protobuf
        options["including_default_value_fields"] = True
    as_dict = json_format.MessageToDict(normalized, **options)
    return json.dumps(_int64_as_numbers(normalized, as_dict))


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _int64_as_numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """Protobuf's JSON writes 64-bit integers as strings; Triton converts them back."""
    for descriptor in message.DESCRIPTOR.fields:
        name = descriptor.name
        if name not in data:
            continue
        value = data[name]
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            value_field = descriptor.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                field_value = getattr(message, name)
                for key in list(value):
                    proto_key: Any = key
                    key_field = descriptor.message_type.fields_by_name["key"]
                    if key_field.cpp_type != FieldDescriptor.CPPTYPE_STRING:
                        proto_key = int(key) if key_field.type != FieldDescriptor.TYPE_BOOL else key
                    value[key] = _int64_as_numbers(field_value[proto_key], value[key])
            elif value_field.type in _INT64_TYPES:
                data[name] = {k: int(v) for k, v in value.items()}
        elif descriptor.message_type is not None:
            field_value = getattr(message, name)
            if isinstance(value, list):  # a repeated message field
                data[name] = [_int64_as_numbers(m, d) for m, d in zip(field_value, value)]
            else:
                data[name] = _int64_as_numbers(field_value, value)
        elif descriptor.type in _INT64_TYPES:
            data[name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return data
