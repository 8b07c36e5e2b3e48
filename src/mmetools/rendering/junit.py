"""JUnit XML reports, the one writer of them: build steps (``mmetools build``, ``ci/pipeline``),
Triton test runs (``mmetools test``) and output diffs (``mmetools diff``).

Every report is indented, UTF-8 with an XML declaration, and written atomically
(:func:`mmetools.rendering.files.write_report`). Every name, message and text is made XML-safe
first (:func:`xml_safe`): a fixture file name with a control character or an undecodable byte
must not make the whole report unparseable.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmetools.model.cases import regen_hint
from mmetools.deploy.smoke import ModelSmoke
from mmetools.release.diff import DiffReport
from mmetools.rendering.console import StepRow, model_folder_of
from mmetools.rendering.files import write_report

if TYPE_CHECKING:
    from mmetools.testing.source_test import RunResult


def write_steps_junit(rows: Sequence[StepRow], path: Path, name: str) -> None:
    """One testsuite per model, one testcase per step (written atomically)."""
    suites = ET.Element("testsuites", name=name)
    by_model: dict[str, list[StepRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=model,
            tests=str(len(model_rows)),
            failures=str(sum(r.status == "failed" for r in model_rows)),
            skipped=str(sum(r.status == "skipped" for r in model_rows)),
            time=f"{sum(r.seconds for r in model_rows):.3f}",
        )
        for row in model_rows:
            case = ET.SubElement(
                suite, "testcase", classname=model, name=row.step, time=f"{row.seconds:.3f}"
            )
            if row.status == "failed":
                first = row.detail.splitlines()[0] if row.detail else "failed"
                failure = ET.SubElement(case, "failure", message=first)
                failure.text = row.detail
            elif row.status == "skipped":
                ET.SubElement(case, "skipped", message=row.detail)
    _write_xml(suites, path)


def write_test_junit(run: RunResult, path: Path) -> None:
    """A JUnit XML report: one testsuite per model, one testcase per fixture case (a model that
    could not be loaded is one errored testcase named 'load'). Written atomically."""
    root = ET.Element("testsuites", name="mmetools test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for report in run.reports:
        suite = ET.SubElement(root, "testsuite", name=report.name)
        counts = {"tests": 0, "failures": 0, "errors": 0}
        share = (sum(report.latencies) / len(report.results)) if report.results else 0.0
        for result in report.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"mmetools.{report.name}",
                name=result.case.name,
                time=f"{share:.4f}",
            )
            counts["tests"] += 1
            if result.error is not None:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=result.error).text = result.error
            elif not result.passed:
                counts["failures"] += 1
                messages = [c.message for c in result.comparisons if not c.passed]
                messages.append(regen_hint(model_folder_of(report)))
                ET.SubElement(case, "failure", message=messages[0]).text = "\n".join(messages)
        for name in report.not_run:
            case = ET.SubElement(suite, "testcase", classname=f"mmetools.{report.name}", name=name)
            counts["tests"] += 1
            counts["errors"] += 1
            ET.SubElement(case, "error", message="not run: the server died").text = report.error
        if report.error and not report.not_run:
            case = ET.SubElement(
                suite, "testcase", classname=f"mmetools.{report.name}", name="load"
            )
            counts["tests"] += 1
            counts["errors"] += 1
            detail = "\n".join([report.error, *report.log_lines])
            ET.SubElement(case, "error", message=report.error.splitlines()[0]).text = detail
        suite.set("time", f"{(report.load_seconds or 0.0) + sum(report.latencies):.4f}")
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    _write_xml(root, path)


def write_diff_junit(report: DiffReport, path: Path) -> None:
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
        if not o.passed and report.accepted:
            ET.SubElement(case, "system-out").text = "accepted: " + "\n".join(o.violations)
        elif not o.passed:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=o.violations[0]).text = "\n".join(o.violations)
    if report.interface_changes:
        case = ET.SubElement(
            suite, "testcase", classname=f"mmetools.release.diff.{report.model}", name="outputs"
        )
        counts["tests"] += 1
        changes = report.interface_changes
        if report.accepted:
            ET.SubElement(case, "system-out").text = "accepted: " + "\n".join(changes)
        else:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=changes[0]).text = "\n".join(changes)
    if report.errors:
        case = ET.SubElement(
            suite, "testcase", classname=f"mmetools.release.diff.{report.model}", name="run"
        )
        counts.update(["tests", "errors"])
        ET.SubElement(case, "error", message=report.errors[0]).text = "\n".join(report.errors)
    for key in ("tests", "failures", "errors", "skipped"):
        suite.set(key, str(counts[key]))
    _write_xml(suite, path)


# What XML 1.0 forbids (Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]): other C0 controls, lone surrogates (undecodable bytes of a file name,
# os.fsdecode's surrogateescape) and U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids shown as a Python-style escape
    (``\\x01``, ``\\xff`` for an undecodable byte of a file name, ``\\ud800``)."""
    return _NOT_XML.sub(_escaped, text)


def _make_xml_safe(root: ET.Element) -> None:
    for element in root.iter():
        for key, value in element.attrib.items():
            element.set(key, xml_safe(value))
        if element.text:
            element.text = xml_safe(element.text)
        if element.tail:
            element.tail = xml_safe(element.tail)


def _write_xml(root: ET.Element, path: Path) -> None:
    """The one JUnit file writer: XML-safe, indented, UTF-8, written atomically."""
    _make_xml_safe(root)
    ET.indent(root)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    write_report(path, data, "JUnit XML report")


def write_smoke_junit(endpoint: str, results: Sequence[ModelSmoke], path: Path) -> None:
    """``mmetools smoke``: one testsuite per TargetModel, one testcase per fixture sent."""
    root = ET.Element("testsuites", name=f"mmetools smoke {endpoint}")
    for result in results:
        suite = ET.SubElement(
            root, "testsuite", name=result.target_model, tests=str(max(len(result.cases), 1)),
            failures=str(sum(not c.passed for c in result.cases)),
            errors=str(int(result.error is not None)),
            time=f"{sum(c.seconds for c in result.cases):.3f}",
        )  # fmt: skip
        if result.error is not None:
            case = ET.SubElement(suite, "testcase", classname=result.model, name="fixtures")
            ET.SubElement(case, "error", message=result.error)
        for check in result.cases:
            case = ET.SubElement(
                suite, "testcase", classname=result.model, name=check.fixture,
                time=f"{check.seconds:.3f}",
            )  # fmt: skip
            if not check.passed:
                failure = ET.SubElement(case, "failure", message=check.message.split("\n")[0])
                failure.text = check.message
    _write_xml(root, path)
