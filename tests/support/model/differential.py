"""Differential harness: model repositories loaded in the real Triton and checked by the validator.

A case is a small repository: a few model folders (files by relative path). Model names written
``@x`` get the case id as prefix (``c07_x``) so that every case lives in one server repository
and one server loads them all. Step models many cases share (``pool``) load once: loading an
ensemble whose steps are loaded and unchanged costs milliseconds, a Python step seconds.

Triton's verdict for a case is "every model folder of the case loads" (explicit model control,
one load request per folder); the validator's is "validate_repository reports no error" on a
copy of the case's folders plus the pool steps it uses. A case may name a ``deliberate``
difference: the reason the validator's verdict differs on purpose (documented in
docs/validate.md); every other difference is a disagreement.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmetools.model.validation import Problem, validate_repository
from support.model.triton_seam import TritonServer

Dims = Sequence[int]
IO = tuple[str, str, Dims]  # name, data type, dims

# --- stand-in steps -------------------------------------------------------------------------

PYTHON_STAND_IN = '''\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Stand-in step: loads fast, answers every request with an empty response."""

    def initialize(self, args):
        pass

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[]) for _ in requests]
'''

BLS_CALL = """

def ask_encoder():
    return pb_utils.InferenceRequest(model_name="text_encoder", inputs=[], requested_output_names=[])
"""

AUTO_COMPLETE_METHOD = """
    @staticmethod
    def auto_complete_config(config):
{lines}
        return config
"""


def python_stand_in(auto_complete: Sequence[str] = ()) -> str:
    """model.py of a stand-in step; ``auto_complete`` lines fill in a config Triton lacks."""
    if not auto_complete:
        return PYTHON_STAND_IN
    body = "\n".join(f"        {line}" for line in auto_complete)
    return PYTHON_STAND_IN + AUTO_COMPLETE_METHOD.format(lines=body)


def onnx_matmul(inputs: int, outputs: int) -> bytes:
    """A tiny ONNX graph Y = X @ W with X [-1, inputs] and Y [-1, outputs] (FP32)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((inputs, outputs), dtype=np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "standin",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", outputs])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # onnxruntime of the serving image reads IR 8
    return bytes(model.SerializeToString())


# --- config text ----------------------------------------------------------------------------


def io_text(tensors: Iterable[IO], extra: Mapping[str, str] | None = None) -> str:
    items = []
    for name, dtype, dims in tensors:
        more = f" {extra[name]}" if extra and name in extra else ""
        items.append(
            f'{{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]{more} }}'
        )
    return ", ".join(items)


def step_config(
    name: str,
    inputs: Sequence[IO],
    outputs: Sequence[IO],
    batch: int = 8,
    more: str = "",
    backend: str = 'backend: "python"',
    io_extra: Mapping[str, str] | None = None,
) -> str:
    return (
        f'name: "{name}"\n{backend}\nmax_batch_size: {batch}\n'
        f"input [ {io_text(inputs, io_extra)} ]\noutput [ {io_text(outputs, io_extra)} ]\n"
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n" + more
    )


Map = Sequence[tuple[str, str]]


def step(model: str, inputs: Map, outputs: Map, version: int | None = -1) -> str:
    pinned = "" if version is None else f" model_version: {version}"
    maps = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs)
    maps += " " + " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs)
    return f'{{ model_name: "{model}"{pinned} {maps} }}'


def ensemble_config(
    name: str,
    inputs: Sequence[IO],
    outputs: Sequence[IO],
    steps: Sequence[str],
    batch: int = 8,
    more: str = "",
    io_extra: Mapping[str, str] | None = None,
) -> str:
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {batch}\n'
        f"input [ {io_text(inputs, io_extra)} ]\noutput [ {io_text(outputs, io_extra)} ]\n"
        f"ensemble_scheduling {{ step [\n  " + ",\n  ".join(steps) + "\n] }\n" + more
    )


def f32(name: str, *dims: int) -> IO:
    return (name, "TYPE_FP32", dims)


def text(name: str, *dims: int) -> IO:
    return (name, "TYPE_STRING", dims)


Files = dict[str, str | bytes]


def python_step(
    name: str,
    inputs: Sequence[IO],
    outputs: Sequence[IO],
    batch: int = 8,
    more: str = "",
    versions: Sequence[str] = ("1",),
    io_extra: Mapping[str, str] | None = None,
) -> Files:
    files: Files = {
        f"{name}/config.pbtxt": step_config(name, inputs, outputs, batch, more, io_extra=io_extra)
    }
    for version in versions:
        files[f"{name}/{version}/model.py"] = PYTHON_STAND_IN
    return files


def ensemble(
    name: str,
    inputs: Sequence[IO],
    outputs: Sequence[IO],
    steps: Sequence[str],
    batch: int = 8,
    more: str = "",
    io_extra: Mapping[str, str] | None = None,
) -> Files:
    # Triton needs a version folder for an ensemble too; a file keeps it in git and in copies.
    return {
        f"{name}/config.pbtxt": ensemble_config(
            name, inputs, outputs, steps, batch, more, io_extra
        ),
        f"{name}/1/.keep": "",
    }


# --- the shared step pool -------------------------------------------------------------------


def pool() -> Files:
    """Valid step models many cases use; loaded once per server."""
    files: Files = {}
    files.update(python_step("p_b8", [f32("X", 4)], [f32("Y", 4)]))
    files.update(python_step("p_b4", [f32("X", 4)], [f32("Y", 4)], batch=4))
    files.update(python_step("p_b0", [f32("X", 4)], [f32("Y", 4)], batch=0))
    files.update(python_step("p_b0_full", [f32("X", -1, 4)], [f32("Y", -1, 4)], batch=0))
    files.update(python_step("p_b8_var", [f32("X", -1)], [f32("Y", -1)]))
    files.update(python_step("p_b8_text_in", [text("X", 1)], [f32("Y", 4)]))
    files.update(
        python_step(
            "p_b8_two", [f32("X", 4), f32("Z", 4)], [f32("Y", 4)], io_extra={"Z": "optional: true"}
        )
    )
    files.update(
        python_step(
            "p_b0_decoupled",
            [f32("X", 4)],
            [f32("Y", 4)],
            batch=0,
            more="model_transaction_policy { decoupled: true }\n",
        )
    )
    files.update(python_step("p_b0_two", [f32("X", 4), f32("Z", 4)], [f32("Y", 4)], batch=0))
    files.update(
        python_step(
            "p_b8_sequence",
            [f32("X", 4)],
            [f32("Y", 4)],
            more="sequence_batching { max_sequence_idle_microseconds: 1000000 }\n",
        )
    )
    files.update(python_step("p_b8_versions", [f32("X", 4)], [f32("Y", 4)], versions=("1", "2")))
    files.update(
        python_step(
            "p_b8_all_versions",
            [f32("X", 4)],
            [f32("Y", 4)],
            versions=("1", "2"),
            more="version_policy { all { } }\n",
        )
    )
    files.update(
        python_step(
            "p_b8_reshape",
            [f32("X", 4)],
            [f32("Y", 4)],
            io_extra={"X": "reshape: { shape: [ 2, 2 ] }"},
        )
    )
    files["o_b8/config.pbtxt"] = step_config(
        "o_b8", [f32("X", 4)], [f32("Y", 2)], backend='platform: "onnxruntime_onnx"'
    )
    files["o_b8/1/model.onnx"] = onnx_matmul(4, 2)
    return files


# --- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rule: str  # what it exercises
    files: Files
    # Set when the validator's verdict differs from the bundled Triton's on purpose: why.
    deliberate: str = ""

    def materialized(self) -> Files:
        prefix = f"{self.id}_"
        # Names appear in paths and configs only (model.py has its own @decorators).
        return {
            path.replace("@", prefix): (
                content.replace("@", prefix)
                if isinstance(content, str) and path.endswith(".pbtxt")
                else content
            )
            for path, content in self.files.items()
        }

    def model_names(self) -> list[str]:
        return sorted({path.split("/", 1)[0] for path in self.materialized()})


def chain(
    first: str,
    second: str,
    ens_in: IO = f32("X", 4),
    ens_out: IO = f32("Y", 4),
    batch: int = 8,
) -> Files:
    """An ensemble @e running ``first`` then ``second`` (both X -> Y)."""
    return ensemble(
        "@e",
        [ens_in],
        [ens_out],
        [step(first, [("X", "X")], [("Y", "t")]), step(second, [("X", "t")], [("Y", "Y")])],
        batch,
    )


def single(
    model: str,
    ens_in: Sequence[IO] = (f32("X", 4),),
    ens_out: Sequence[IO] = (f32("Y", 4),),
    batch: int = 8,
    inputs: Map = (("X", "X"),),
    outputs: Map = (("Y", "Y"),),
    version: int | None = -1,
    more: str = "",
    io_extra: Mapping[str, str] | None = None,
) -> Files:
    return ensemble(
        "@e", ens_in, ens_out, [step(model, inputs, outputs, version)], batch, more, io_extra
    )


def merged(*parts: Files) -> Files:
    files: Files = {}
    for part in parts:
        files.update(part)
    return files


AUTO_X_Y_NO_BATCH = (
    'config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [4]})',
    'config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [4]})',
    "config.set_max_batch_size(0)",
)


def default_cases() -> list[Case]:
    """Every rule the validator knows, accepted and refused, in the CI budget."""
    specs: list[tuple[str, Files, str]] = [
        # batching and non-batching steps
        ("batching chain", chain("p_b8", "p_b8"), ""),
        ("non-batching chain", chain("p_b0", "p_b0", batch=0), ""),
        ("batching -> non-batching, equal dims, ensemble batch 8", chain("p_b8", "p_b0"), ""),
        (
            "batching -> non-batching, equal dims, ensemble batch 1",
            chain("p_b8", "p_b0", batch=1),
            "",
        ),
        ("batching -> non-batching, full dims", chain("p_b8", "p_b0_full"), ""),
        ("non-batching -> batching, equal dims", chain("p_b0", "p_b8"), ""),
        ("non-batching ensemble -> batching step", single("p_b8", batch=0), ""),
        (
            "non-batching ensemble [-1,4] -> batching step",
            single("p_b8", ens_in=[f32("X", -1, 4)], ens_out=[f32("Y", -1, 4)], batch=0),
            "",
        ),
        ("ensemble batch 8 > step batch 4", single("p_b4"), ""),
        ("ensemble batch 4 = step batch 4", single("p_b4", batch=4), ""),
        # -1 dims, reshape
        ("-1 dims accept fixed", single("p_b8_var"), ""),
        ("-1 dims, rank differs", single("p_b8_var", ens_in=[f32("X", 4, 4)]), ""),
        ("fixed dims differ", single("p_b8", ens_in=[f32("X", 5)]), ""),
        ("rank differs", single("p_b8", ens_in=[f32("X", 1, 4)]), ""),
        ("step input with reshape", single("p_b8_reshape"), ""),
        (
            "ensemble input reshape to the step's dims",
            single(
                "p_b8",
                ens_in=[f32("X", 2, 2)],
                io_extra={"X": "reshape: { shape: [ 4 ] }"},
            ),
            "",
        ),
        (
            "reshape with another element count",
            python_step(
                "@s", [f32("X", 4)], [f32("Y", 4)], io_extra={"X": "reshape: { shape: [ 3 ] }"}
            ),
            "",
        ),
        ("dims with a 0", python_step("@s", [f32("X", 0)], [f32("Y", 4)]), ""),
        # data types, BYTES
        ("BYTES input", single("p_b8_text_in", ens_in=[text("X", 1)]), ""),
        ("data type differs", single("p_b8_text_in"), ""),
        ("ensemble output type differs", single("p_b8", ens_out=[text("Y", 4)]), ""),
        # optional inputs, maps
        ("optional input left unmapped", single("p_b8_two"), ""),
        ("required input left unmapped", single("p_b0_two", batch=0), ""),
        ("map names an input the step lacks", single("p_b8", inputs=[("Q", "X")]), ""),
        (
            "input_map key repeated",
            single("p_b8", inputs=[("X", "X"), ("X", "X")]),
            "",
        ),
        (
            "two outputs to one tensor",
            ensemble(
                "@e",
                [f32("X", 4)],
                [f32("Y", 4)],
                [
                    step("p_b8", [("X", "X")], [("Y", "Y")]),
                    step("p_b4", [("X", "X")], [("Y", "Y")]),
                ],
                4,
            ),
            "",
        ),
        ("ensemble input unused", single("p_b8", ens_in=[f32("X", 4), f32("U", 4)]), ""),
        ("ensemble output never written", single("p_b8", ens_out=[f32("Y", 4), f32("V", 4)]), ""),
        (
            "steps in a cycle",
            ensemble(
                "@e",
                [f32("X", 4)],
                [f32("Y", 4)],
                [
                    step("p_b0_two", [("X", "X"), ("Z", "b")], [("Y", "a")]),
                    step("p_b0", [("X", "a")], [("Y", "b")]),
                    step("p_b8", [("X", "a")], [("Y", "Y")]),
                ],
                0,
            ),
            "",
        ),
        ("step model missing", single("p_missing"), ""),
        # nested ensembles
        (
            "nested ensemble",
            merged(
                single("@inner"),
                ensemble(
                    "@inner",
                    [f32("X", 4)],
                    [f32("Y", 4)],
                    [step("p_b8", [("X", "X")], [("Y", "Y")])],
                ),
            ),
            "",
        ),
        (
            "ensembles in a cycle",
            merged(
                ensemble(
                    "@a", [f32("X", 4)], [f32("Y", 4)], [step("@b", [("X", "X")], [("Y", "Y")])]
                ),
                ensemble(
                    "@b", [f32("X", 4)], [f32("Y", 4)], [step("@a", [("X", "X")], [("Y", "Y")])]
                ),
            ),
            "",
        ),
        # decoupled, sequence batching
        ("decoupled step", single("p_b0_decoupled", batch=0), ""),
        (
            "inputs from a decoupled step and the request",
            ensemble(
                "@e",
                [f32("X", 4)],
                [f32("Y", 4)],
                [
                    step("p_b0_decoupled", [("X", "X")], [("Y", "d")]),
                    step("p_b0_two", [("X", "d"), ("Z", "X")], [("Y", "Y")]),
                ],
                0,
            ),
            "",
        ),
        ("sequence batching step", single("p_b8_sequence"), ""),
        # versions
        ("pinned step version loaded", single("p_b8_versions", version=2), ""),
        ("pinned step version not loaded by the policy", single("p_b8_versions", version=1), ""),
        ("pinned version, policy all", single("p_b8_all_versions", version=1), ""),
        ("pinned version that does not exist", single("p_b8_versions", version=3), ""),
        ("model_version omitted (0)", single("p_b8", version=None), ""),
        (
            "version_policy selects no folder",
            python_step(
                "@s",
                [f32("X", 4)],
                [f32("Y", 4)],
                more="version_policy { specific { versions: [ 3 ] } }\n",
            ),
            "",
        ),
        (
            "only a version folder with a leading zero",
            python_step("@s", [f32("X", 4)], [f32("Y", 4)], versions=("01",)),
            "",
        ),
        # missing and misplaced configs
        (
            "step without config.pbtxt, model.py auto-completes",
            merged(
                single("@s", batch=0),
                {"@s/1/model.py": python_stand_in(AUTO_X_Y_NO_BATCH)},
            ),
            "",
        ),
        (
            "step without config.pbtxt, model.py cannot auto-complete",
            merged(single("@s", batch=0), {"@s/1/model.py": PYTHON_STAND_IN}),
            "",
        ),
        (
            "ONNX step without config.pbtxt",
            merged(
                single("@o", ens_in=[f32("X", -1, 4)], ens_out=[f32("Y", -1, 2)], batch=0),
                {"@o/1/model.onnx": onnx_matmul(4, 2)},
            ),
            "the native onnxruntime backend fills in inputs and outputs from model.onnx; the "
            "bundled server's Python-based stand-in cannot, so it refuses what NVIDIA's image "
            "loads: the validator warns that the step cannot be checked statically",
        ),
        (
            "config.pbtxt inside the version folder",
            {
                "@e/1/config.pbtxt": ensemble_config(
                    "@e", [f32("X", 4)], [f32("Y", 4)], [step("p_b8", [("X", "X")], [("Y", "Y")])]
                )
            },
            "",
        ),
        ("folder without config or model file", {"@s/1/notes.txt": "nothing to serve\n"}, ""),
        # single-model rules
        ("ONNX step", single("o_b8", ens_out=[f32("Y", 2)]), ""),
        (
            "platform and backend disagree",
            {
                "@o/config.pbtxt": step_config(
                    "@o",
                    [f32("X", 4)],
                    [f32("Y", 2)],
                    backend='platform: "onnxruntime_onnx"\nbackend: "pytorch"',
                ),
                "@o/1/model.onnx": onnx_matmul(4, 2),
            },
            "",
        ),
        (
            "config name differs from folder",
            {
                "@s/config.pbtxt": step_config("other", [f32("X", 4)], [f32("Y", 4)]),
                "@s/1/model.py": PYTHON_STAND_IN,
            },
            "",
        ),
        (
            "neither platform nor backend, model.py present",
            {
                "@s/config.pbtxt": step_config("@s", [f32("X", 4)], [f32("Y", 4)], backend=""),
                "@s/1/model.py": PYTHON_STAND_IN,
            },
            "",
        ),
        (
            "ensemble sets instance_group",
            single("p_b8", more="instance_group [ { kind: KIND_CPU count: 1 } ]\n"),
            "",
        ),
        ("ensemble without steps", ensemble("@e", [f32("X", 4)], [f32("Y", 4)], []), ""),
        ("negative max_batch_size", python_step("@s", [f32("X", 4)], [f32("Y", 4)], batch=-1), ""),
        (
            "BLS request to a model outside the repository",
            merged(
                python_step("@s", [f32("X", 4)], [f32("Y", 4)]),
                {"@s/1/model.py": PYTHON_STAND_IN + BLS_CALL},
            ),
            "Triton loads the step and fails only when it runs the request; on a multi-model "
            "endpoint a model outside the artifact is never loaded (server issue 5452), so the "
            "validator refuses it",
        ),
        (
            "syntax error",
            {
                "@s/config.pbtxt": 'name: "@s"\nbackend: "python"\ninput [ {',
                "@s/1/model.py": PYTHON_STAND_IN,
            },
            "",
        ),
    ]
    return [
        Case(f"c{index:02d}", rule, files, why) for index, (rule, files, why) in enumerate(specs, 1)
    ]


def large_cases() -> list[Case]:
    """Combinations: producer batch x consumer batch x ensemble batch x consumer dims."""
    cases = []
    consumers = {
        "p_b8": "batching [4]",
        "p_b0": "non-batching [4]",
        "p_b0_full": "non-batching [-1,4]",
        "p_b8_var": "batching [-1]",
        "p_b4": "batch 4 [4]",
    }
    producers = {
        "p_b8": "batching",
        "p_b0": "non-batching",
        "p_b4": "batch 4",
        "p_b0_decoupled": "decoupled",
    }
    for number, (producer, consumer, batch) in enumerate(
        itertools.product(producers, consumers, (0, 1, 4, 8)), start=1
    ):
        cases.append(
            Case(
                f"x{number:03d}",
                f"{producers[producer]} -> {consumers[consumer]}, ensemble batch {batch}",
                chain(producer, consumer, batch=batch),
            )
        )
    return cases


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    case: Case
    triton_accepts: bool
    triton_error: str
    validator_accepts: bool
    problems: tuple[str, ...]
    seconds: float
    crash: str = ""  # the server died on a first attempt (then retried on a fresh one)

    @property
    def agrees(self) -> bool:
        return self.triton_accepts == self.validator_accepts

    @property
    def expected(self) -> bool:
        """Agreement, or the documented deliberate difference."""
        return self.agrees != bool(self.case.deliberate)


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


_MODEL_NAME = re.compile(r'model_name:\s*"([^"]+)"')


def pool_models_used(files: Mapping[str, str | bytes], pool_names: set[str]) -> set[str]:
    used: set[str] = set()
    for content in files.values():
        if isinstance(content, str):
            used.update(n for n in _MODEL_NAME.findall(content) if n in pool_names)
    return used


Validator = Callable[[Path], list[Problem]]


def _prepare(server: TritonServer) -> set[str]:
    """Write and load the pool; returns its model names."""
    shared = pool()
    names = {path.split("/", 1)[0] for path in shared}
    write_files(server.repository, shared)
    for name in sorted(names):
        server.load(name)  # a pool step that does not load is a broken harness
    return names


def _triton_verdict(server: TritonServer, case: Case, files: Files) -> list[str]:
    """Triton's errors for the case (none: every folder loaded)."""
    write_files(server.repository, files)
    errors = []
    for name in case.model_names():
        result = server.try_load(name)
        if result.seconds is None:
            errors.append(result.error or "refused")
            server.unload(name, dependents=False)
    return errors


def run_cases(
    server: TritonServer,
    cases: Sequence[Case],
    workdir: Path,
    validator: Validator = validate_repository,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Load every case in ``server`` and validate a copy of it; one Outcome per case.

    When the server dies during a case (a crash is Triton's bug, not a verdict), it is started
    again and the case retried once on the fresh server; the crash is kept in the outcome.
    """
    pool_names = _prepare(server)
    outcomes = []
    for case in cases:
        files = case.materialized()
        begin = time.perf_counter()
        folder = workdir / case.id
        write_files(folder, files)
        for name in pool_models_used(files, pool_names):
            shutil.copytree(server.repository / name, folder / name)
        problems = validator(folder)
        errors = _triton_verdict(server, case, files)
        crash = ""
        if not server.alive():
            crash = "; ".join(errors)
            server.stop()
            server.start()
            _prepare(server)
            errors = _triton_verdict(server, case, files)
            if not server.alive():
                raise RuntimeError(f"{case.id} {case.rule}: Triton crashes twice: {crash}")
        outcome = Outcome(
            case,
            not errors,
            "; ".join(errors),
            not any(p.is_error for p in problems),
            tuple(str(p) for p in problems),
            time.perf_counter() - begin,
            crash,
        )
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return outcomes


def agreement_line(outcomes: Sequence[Outcome]) -> str:
    agreeing = sum(o.agrees for o in outcomes)
    deliberate = sum(1 for o in outcomes if not o.agrees and o.case.deliberate)
    unexpected = sum(1 for o in outcomes if not o.expected)
    return (
        f"agreement: {agreeing}/{len(outcomes)} cases; {deliberate} deliberate differences, "
        f"{unexpected} unexpected"
    )


def outcome_line(outcome: Outcome) -> str:
    def verdict(accepts: bool) -> str:
        return "accepts" if accepts else "refuses"

    mark = "ok " if outcome.agrees else ("DEL" if outcome.case.deliberate else "XX ")
    return (
        f"{mark} {outcome.case.id} {outcome.case.rule}: Triton {verdict(outcome.triton_accepts)}, "
        f"validator {verdict(outcome.validator_accepts)} ({outcome.seconds:.1f} s)"
    )


def report(outcomes: Sequence[Outcome]) -> Iterator[str]:
    for outcome in outcomes:
        yield outcome_line(outcome)
        if not outcome.agrees:
            if outcome.triton_error:
                yield f"      Triton: {outcome.triton_error[:300]}"
            for problem in outcome.problems:
                yield f"      validator: {problem[:300]}"
    for outcome in outcomes:
        if outcome.crash:
            yield f"crash: {outcome.case.id} first attempt: {outcome.crash[:300]}"
    yield agreement_line(outcomes)


@dataclass
class Progress:
    lines: list[str] = field(default_factory=list)

    def __call__(self, outcome: Outcome) -> None:
        self.lines.append(outcome_line(outcome))
