"""``mmetools diff``: the candidate's predictions against the published previous version's.

Both run on one Triton through the SageMaker MME emulation (:mod:`mmetools.testing.artifact_test`): the
previous version's tarball is fetched from its destination and unpacked as SageMaker does, the
candidate is a tarball or a model folder (staged as the tarball's members). Every input is sent
to both: the fixtures' inputs, plus an optional dataset:

- a folder of input-only case files ``*.json``: ``{"description": "...", "inputs": {...}}`` in the
  fixture format (BYTES from ``files`` relative to the case file);
- or a ``.jsonl`` file, one ``{"name": "...", "inputs": {...}}`` per line (``files`` relative to
  the ``.jsonl``'s folder).

Per output: float outputs get max abs/rel difference and the share of elements beyond
``atol + rtol * |previous|``; label outputs (BYTES, integers, BOOL) get the flip rate and every
flip listed. Thresholds come from ``models/<name>/regression.toml``::

    atol = 1e-5              # defaults for every output
    rtol = 1e-4
    max_beyond_share = 0.0   # share of float elements allowed beyond tolerance
    max_flip_rate = 0.0      # share of label elements allowed to change
    [outputs.PROBABILITY]    # per output, any of the same keys
    atol = 1e-3
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import tomllib
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mmetools.core.errors import ArtifactError, ConfigError, FixtureError, TritonError, UsageError
from mmetools.model.cases import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    FLOAT_DATATYPES,
    EnsembleSignature,
    FixtureCase,
    load_fixtures,
    parse_input_case,
    read_fixture_document,
)
from mmetools.testing.source_test import stage_repository
from mmetools.model.folder import ModelFolder, parse_artifact_name
from mmetools.release.published import PublishedVersion, fetch_published, find_previous
from mmetools.testing.artifact_test import (
    MmeClient,
    emulated_target,
    packed_env_steps,
    unpack_for_server,
)
from mmetools.testing.serving_env import ensure_serving_env
from mmetools.core.settings import Settings
from mmetools.testing.triton import SAGEMAKER, TritonServer, resolve_mode

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

REGRESSION_FILE = "regression.toml"
SHOWN_FLIPS = 50

Progress = Callable[[str, int, int], None]  # (what, done, total)


# ------------------------------------------------------------------------------------------------
# Thresholds


@dataclass(frozen=True)
class OutputThresholds:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    max_beyond_share: float = 0.0
    max_flip_rate: float = 0.0


@dataclass(frozen=True)
class Thresholds:
    default: OutputThresholds = OutputThresholds()
    outputs: Mapping[str, OutputThresholds] = field(default_factory=dict)
    source: str = "defaults"

    def of(self, output: str) -> OutputThresholds:
        return self.outputs.get(output, self.default)


def _thresholds(path: Path, where: str, raw: Mapping[str, Any], base: OutputThresholds) -> Any:
    allowed = {f.name for f in fields(OutputThresholds)}
    values: dict[str, float] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(
                f"{path}: {where}has no setting '{key}' (known: {', '.join(sorted(allowed))})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: {where}{key} must be a number >= 0, got {value!r}")
        values[key] = float(value)
    return replace(base, **values)


def load_thresholds(model: ModelFolder) -> Thresholds:
    """``models/<name>/regression.toml``; the defaults when the file is absent."""
    path = model.path / REGRESSION_FILE
    if not path.is_file():
        return Thresholds()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    per_output = raw.pop("outputs", {})
    if not isinstance(per_output, dict):
        raise ConfigError(f"{path}: [outputs] must be a table of output name -> thresholds")
    default = _thresholds(path, "", raw, OutputThresholds())
    signature = EnsembleSignature.from_config(model.ensemble().config)
    outputs: dict[str, OutputThresholds] = {}
    for name, values in per_output.items():
        if name not in signature.outputs:
            raise ConfigError(
                f"{path}: [outputs.{name}]: '{name}' is not an output of ensemble "
                f"'{signature.model}' (its outputs: {', '.join(signature.outputs)})"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [outputs.{name}] must be a table")
        outputs[name] = _thresholds(path, f"[outputs.{name}] ", values, default)
    return Thresholds(default, outputs, str(path))


# ------------------------------------------------------------------------------------------------
# Inputs


def load_dataset(path: Path, signature: EnsembleSignature, model_name: str) -> list[FixtureCase]:
    """Input-only cases from a folder of ``*.json`` case files or a ``.jsonl`` file."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise FixtureError(f"{path}: the dataset folder holds no *.json case files")
        return [
            parse_input_case(read_fixture_document(f), f, f.stem, signature, model_name)
            for f in files
        ]
    if path.suffix == ".jsonl" and path.is_file():
        cases: list[FixtureCase] = []
        seen: set[str] = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                document = json.loads(line)
            except json.JSONDecodeError as e:
                raise FixtureError(f"{where}: invalid JSON: {e.msg}") from e
            if not isinstance(document, dict) or not isinstance(document.get("name"), str):
                raise FixtureError(f"{where}: each line must be an object with a 'name' string")
            name = document.pop("name")
            if name in seen:
                raise FixtureError(f"{where}: the name {name!r} is used twice")
            seen.add(name)
            cases.append(parse_input_case(document, path, name, signature, model_name))
        if not cases:
            raise FixtureError(f"{path}: the dataset holds no cases")
        return cases
    raise UsageError(f"--dataset {path}: give a folder of *.json case files or a .jsonl file")


# ------------------------------------------------------------------------------------------------
# Comparing outputs (pure)


@dataclass(frozen=True)
class Flip:
    case: str
    index: int  # flat element index in the output tensor
    previous: str
    candidate: str


@dataclass(frozen=True)
class OutputDiff:
    """How one output changed over every input."""

    output: str
    kind: str  # "float" or "label"
    elements: int
    thresholds: OutputThresholds
    max_abs: float = 0.0
    max_rel: float = 0.0
    beyond: int = 0  # float elements beyond atol + rtol * |previous|
    flips: tuple[Flip, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # shape or datatype changes

    @property
    def beyond_share(self) -> float:
        return self.beyond / self.elements if self.elements else 0.0

    @property
    def flip_rate(self) -> float:
        return len(self.flips) / self.elements if self.elements else 0.0

    @property
    def violations(self) -> tuple[str, ...]:
        found = list(self.problems)
        if self.kind == "float" and self.beyond_share > self.thresholds.max_beyond_share:
            found.append(
                f"{self.output}: {self.beyond} of {self.elements} elements "
                f"({self.beyond_share:.2%}) differ beyond atol {self.thresholds.atol:g} + rtol "
                f"{self.thresholds.rtol:g} (allowed {self.thresholds.max_beyond_share:.2%}); "
                f"max abs difference {self.max_abs:.3g}"
            )
        if self.kind == "label" and self.flip_rate > self.thresholds.max_flip_rate:
            found.append(
                f"{self.output}: {len(self.flips)} of {self.elements} labels flipped "
                f"({self.flip_rate:.2%}, allowed {self.thresholds.max_flip_rate:.2%})"
            )
        return tuple(found)

    @property
    def passed(self) -> bool:
        return not self.violations


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value.item() if hasattr(value, "item") else value)


def compare_output(
    output: str,
    datatype: str,
    pairs: Sequence[tuple[str, npt.NDArray[Any], npt.NDArray[Any]]],
    thresholds: OutputThresholds,
) -> OutputDiff:
    """Compare one output over every case: ``pairs`` is (case, previous, candidate)."""
    kind = "float" if datatype in FLOAT_DATATYPES else "label"
    problems: list[str] = []
    elements = 0
    max_abs = max_rel = 0.0
    beyond = 0
    flips: list[Flip] = []
    abs_diffs: list[npt.NDArray[np.float64]] = []
    previous_values: list[npt.NDArray[Any]] = []
    candidate_values: list[npt.NDArray[Any]] = []
    for case, previous, candidate in pairs:
        previous, candidate = np.asarray(previous), np.asarray(candidate)
        if previous.shape != candidate.shape:
            problems.append(
                f"{output}: case '{case}': shape {list(previous.shape)} became "
                f"{list(candidate.shape)}"
            )
            continue
        elements += previous.size
        if kind == "float":
            a, b = previous.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
            difference = np.abs(b - a)
            nan_mismatch = np.isnan(a) != np.isnan(b)
            difference = np.where(np.isnan(a) & np.isnan(b), 0.0, difference)
            difference = np.where(nan_mismatch, np.inf, difference)
            abs_diffs.append(difference)
            previous_values.append(a)
            candidate_values.append(b)
            if difference.size:
                max_abs = max(max_abs, float(difference.max()))
                nonzero = a != 0
                if nonzero.any():
                    max_rel = max(max_rel, float((difference[nonzero] / np.abs(a[nonzero])).max()))
                allowed = thresholds.atol + thresholds.rtol * np.abs(np.nan_to_num(a))
                beyond += int(np.count_nonzero(difference > allowed))
        else:
            a_items, b_items = previous.ravel().tolist(), candidate.ravel().tolist()
            previous_values.append(np.array([_text(v) for v in a_items], dtype=object))
            candidate_values.append(np.array([_text(v) for v in b_items], dtype=object))
            for index, (x, y) in enumerate(zip(a_items, b_items)):
                if x != y:
                    flips.append(Flip(case, index, _text(x), _text(y)))
    summary: dict[str, Any] = {}
    if kind == "float" and abs_diffs:
        diffs = np.concatenate(abs_diffs)
        finite = diffs[np.isfinite(diffs)]
        before, after = np.concatenate(previous_values), np.concatenate(candidate_values)
        summary = {
            "previous_mean": float(np.nanmean(before)) if before.size else 0.0,
            "candidate_mean": float(np.nanmean(after)) if after.size else 0.0,
            "abs_diff_mean": float(finite.mean()) if finite.size else 0.0,
            "abs_diff_p50": float(np.percentile(finite, 50)) if finite.size else 0.0,
            "abs_diff_p99": float(np.percentile(finite, 99)) if finite.size else 0.0,
        }
    elif kind == "label" and previous_values:
        summary = {
            "previous_counts": dict(
                sorted(Counter(np.concatenate(previous_values).tolist()).items())
            ),
            "candidate_counts": dict(
                sorted(Counter(np.concatenate(candidate_values).tolist()).items())
            ),
        }
    return OutputDiff(
        output,
        kind,
        elements,
        thresholds,
        max_abs,
        max_rel,
        beyond,
        tuple(flips),
        summary,
        tuple(problems),
    )


# ------------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class DiffReport:
    model: str
    candidate: str  # the candidate's folder or tarball
    previous: PublishedVersion | None
    cases: int = 0
    outputs: tuple[OutputDiff, ...] = ()
    errors: tuple[str, ...] = ()  # inputs that failed on one side, load failures
    thresholds_source: str = "defaults"
    note: str = ""

    @property
    def skipped(self) -> bool:
        return self.previous is None

    @property
    def passed(self) -> bool:
        return not self.errors and all(o.passed for o in self.outputs)

    @property
    def violations(self) -> tuple[str, ...]:
        return (*self.errors, *(v for o in self.outputs for v in o.violations))


def _float_text(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def markdown_report(report: DiffReport) -> str:
    """A Markdown summary a CI system can post on a merge request."""
    lines = [f"### mmetools diff: {report.model}", ""]
    if report.skipped:
        lines += [f"Skipped: {report.note}", ""]
        return "\n".join(lines)
    assert report.previous is not None
    status = "**PASS**" if report.passed else "**FAIL**"
    lines += [
        f"{status}: candidate `{report.candidate}` against {report.previous.role} "
        f"`{report.previous.artifact_name}` over {report.cases} input(s); thresholds: "
        f"{report.thresholds_source}.",
        "",
        "| output | kind | elements | max abs | max rel | beyond tol | flips | result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in report.outputs:
        float_kind = o.kind == "float"
        lines.append(
            f"| {o.output} | {o.kind} | {o.elements} | "
            f"{_float_text(o.max_abs) if float_kind else '-'} | "
            f"{_float_text(o.max_rel) if float_kind else '-'} | "
            f"{f'{o.beyond} ({o.beyond_share:.2%})' if float_kind else '-'} | "
            f"{'-' if float_kind else f'{len(o.flips)} ({o.flip_rate:.2%})'} | "
            f"{'pass' if o.passed else 'FAIL'} |"
        )
    lines.append("")
    for o in report.outputs:
        if o.summary:
            lines.append(
                f"- {o.output}: " + ", ".join(f"{k} {_summary(v)}" for k, v in o.summary.items())
            )
    flips = [(o.output, f) for o in report.outputs for f in o.flips]
    if flips:
        lines += [
            "",
            f"Flips ({len(flips)}):",
            "",
            "| output | case | element | previous | candidate |",
        ]
        lines.append("|---|---|---:|---|---|")
        for output, flip in flips[:SHOWN_FLIPS]:
            lines.append(
                f"| {output} | {flip.case} | {flip.index} | {flip.previous} | {flip.candidate} |"
            )
        if len(flips) > SHOWN_FLIPS:
            lines.append(f"| ... {len(flips) - SHOWN_FLIPS} more | | | | |")
    if report.violations:
        lines += ["", "Over threshold:", ""] + [f"- {v}" for v in report.violations]
    lines.append("")
    return "\n".join(lines)


def _summary(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def report_json(report: DiffReport) -> dict[str, Any]:
    previous = None
    if report.previous is not None:
        previous = {
            "role": report.previous.role,
            "artifact": report.previous.artifact_name,
            "uri": report.previous.uri,
        }
    return {
        "model": report.model,
        "candidate": report.candidate,
        "previous": previous,
        "skipped": report.skipped,
        "note": report.note,
        "passed": report.passed,
        "cases": report.cases,
        "thresholds": report.thresholds_source,
        "errors": list(report.errors),
        "outputs": [
            {
                "output": o.output,
                "kind": o.kind,
                "elements": o.elements,
                "max_abs": o.max_abs,
                "max_rel": o.max_rel,
                "beyond": o.beyond,
                "beyond_share": o.beyond_share,
                "flip_count": len(o.flips),
                "flip_rate": o.flip_rate,
                "flips": [f.__dict__ for f in o.flips],
                "summary": dict(o.summary),
                "violations": list(o.violations),
            }
            for o in report.outputs
        ],
    }


def write_junit_xml(report: DiffReport, path: Path) -> None:
    """One testsuite ``mmetools diff <model>``, one testcase per output (a skip when there is no
    previous version; errors as one errored testcase)."""
    suite = ET.Element("testsuite", name=f"mmetools diff {report.model}")
    counts = Counter[str]()
    if report.skipped:
        case = ET.SubElement(
            suite, "testcase", classname="mmetools.release.diff", name=report.model
        )
        ET.SubElement(case, "skipped", message=report.note)
        counts.update(["tests", "skipped"])
    for o in report.outputs:
        case = ET.SubElement(
            suite, "testcase", classname=f"mmetools.release.diff.{report.model}", name=o.output
        )
        counts["tests"] += 1
        if not o.passed:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=o.violations[0]).text = "\n".join(o.violations)
    if report.errors:
        case = ET.SubElement(
            suite, "testcase", classname=f"mmetools.release.diff.{report.model}", name="run"
        )
        counts.update(["tests", "errors"])
        ET.SubElement(case, "error", message=report.errors[0]).text = "\n".join(report.errors)
    for key in ("tests", "failures", "errors", "skipped"):
        suite.set(key, str(counts[key]))
    ET.indent(suite)
    _write_atomically(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True) + b"\n")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Running both versions on one server


@dataclass(frozen=True)
class _Loaded:
    model_id: str
    target_model: str


def _load_folder(server: TritonServer, folder: Path, target_model: str) -> _Loaded:
    model_id = uuid.uuid4().hex[:16]
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    MmeClient(server).load(model_id, folder, target_model, names).seconds_or_raise()
    return _Loaded(model_id, target_model)


def _unpacked(server: TritonServer, artifact: Path, env_steps: Sequence[str]) -> Path:
    assert server.workdir is not None
    folder = server.workdir / uuid.uuid4().hex[:16] / "model"
    unpack_for_server(server, artifact, folder, env_steps)
    return folder


def staged_model_folder(server: TritonServer, model: ModelFolder) -> Path:
    """The model folder as the tarball would hold it (links to the sources)."""
    assert server.workdir is not None
    folder = server.workdir / uuid.uuid4().hex[:16] / "model"
    folder.mkdir(parents=True)
    stage_repository(model, folder)
    return folder


def compare_versions(
    model: ModelFolder,
    candidate: Path | None,
    previous_artifact: Path,
    previous: PublishedVersion,
    settings: Settings,
    *,
    dataset: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    progress: Progress | None = None,
) -> DiffReport:
    """Run both versions over every input on one SageMaker-frontend Triton and compare."""
    thresholds = load_thresholds(model)
    signature = EnsembleSignature.from_config(model.ensemble().config)
    cases = [replace(c, expected=()) for c in load_fixtures(model)]
    if dataset is not None:
        cases += load_dataset(dataset, signature, model.name)
    outputs = list(signature.outputs)
    env = ensure_serving_env(model.requirements_file, settings.cache_dir)
    candidate_source = str(candidate or model.path)
    target_candidate = candidate.name if candidate is not None else model.ref().artifact_name
    target_previous = previous.artifact_name
    if target_previous == target_candidate:
        target_previous = f"previous-{target_previous}"
    # Packed envs are built for the serving target: serve them as test --artifact does.
    previous_steps = packed_env_steps(previous_artifact, settings)
    candidate_steps = packed_env_steps(candidate, settings) if candidate is not None else ()
    chosen = resolve_mode(settings.triton.mode, mode, image)
    server = TritonServer(
        target_python=emulated_target(settings, chosen, bool(previous_steps or candidate_steps)),
        mode=chosen,
        frontend=SAGEMAKER,
        python_env=env,
        cache_dir=settings.cache_dir,
        image=image or settings.triton.image,
        requirements=model.requirements_file if model.requirements_file.is_file() else None,
    )
    errors: list[str] = []
    results: dict[str, list[tuple[str, Any, Any]]] = {name: [] for name in outputs}
    with server:
        client = MmeClient(server)
        loaded_previous = _load_folder(
            server, _unpacked(server, previous_artifact, previous_steps), target_previous
        )
        folder = (
            _unpacked(server, candidate, candidate_steps)
            if candidate is not None
            else staged_model_folder(server, model)
        )
        loaded_candidate = _load_folder(server, folder, target_candidate)
        for done, case in enumerate(cases):
            if progress is not None:
                progress("inputs", done, len(cases))
            answers: list[dict[str, Any] | str] = []
            for loaded in (loaded_previous, loaded_candidate):
                try:
                    answers.append(
                        client.invoke(loaded.model_id, loaded.target_model, case, outputs)
                    )
                except TritonError as e:
                    answers.append(str(e))
            before, after = answers
            if isinstance(before, str) or isinstance(after, str):
                if isinstance(before, str) and isinstance(after, str):
                    logger.info("input %s fails on both versions", case.name)
                    continue
                side = "candidate" if isinstance(after, str) else "previous version"
                errors.append(
                    f"input '{case.name}' fails on the {side} only: {before if isinstance(before, str) else after}"
                )
                continue
            for name in outputs:
                results[name].append((case.name, before[name], after[name]))
        if progress is not None:
            progress("inputs", len(cases), len(cases))
        for loaded in (loaded_previous, loaded_candidate):
            client.unload(loaded.model_id, loaded.target_model)
    diffs = tuple(
        compare_output(name, signature.outputs[name].datatype, results[name], thresholds.of(name))
        for name in outputs
    )
    return DiffReport(
        model.name,
        candidate_source,
        previous,
        len(cases),
        diffs,
        tuple(errors),
        thresholds.source,
    )


def diff_against_published(
    model: ModelFolder,
    candidate: Path | None,
    settings: Settings,
    *,
    against: str = "auto",
    branch: str | None = None,
    dataset: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    session: boto3.session.Session | None = None,
    progress: Progress | None = None,
) -> DiffReport:
    """What the pipeline calls before publishing: diff ``candidate`` (a tarball, or the model
    folder itself when None) against the highest published version below it. No previous
    version is a skipped report (``report.skipped``), not an error."""
    if candidate is not None:
        ref = parse_artifact_name(candidate)
        if ref.name != model.name:
            raise UsageError(f"{candidate}: an artifact of '{ref.name}', not of '{model.name}'")
        version = ref.version
    else:
        version = model.version()
    previous = find_previous(
        model.name, version, settings, against=against, branch=branch, session=session
    )
    if previous is None:
        return DiffReport(
            model.name,
            str(candidate or model.path),
            None,
            note=f"no published version of {model.name} below {version} ({against}): "
            "the first version has nothing to be compared with",
        )
    with tempfile.TemporaryDirectory(prefix="mmetools-diff-") as scratch:
        try:
            fetched = fetch_published(previous, Path(scratch), session=session)
        except OSError as e:
            raise ArtifactError(f"{previous.uri}: cannot fetch: {e}") from e
        return compare_versions(
            model,
            candidate,
            fetched,
            previous,
            settings,
            dataset=dataset,
            mode=mode,
            image=image,
            progress=progress,
        )


def write_outputs(
    report: DiffReport, markdown: Path | None, junit_xml: Path | None, json_path: Path | None
) -> None:
    if markdown is not None:
        _write_atomically(markdown, markdown_report(report).encode())
    if junit_xml is not None:
        write_junit_xml(report, junit_xml)
    if json_path is not None:
        _write_atomically(json_path, (json.dumps(report_json(report), indent=2) + "\n").encode())


__all__ = [
    "DiffReport",
    "OutputDiff",
    "Thresholds",
    "compare_output",
    "diff_against_published",
    "load_thresholds",
    "markdown_report",
]
