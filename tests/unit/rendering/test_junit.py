"""The one JUnit writer makes every name and message XML-safe.

Defect (issue 20, #15): control characters in a fixture file name went raw into a JUnit testcase
name, and the report no longer parsed; a lone surrogate (a file name byte that is not UTF-8)
could not even be encoded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from support.testing.tiny_models import write_case, write_tiny_model

from mmetools.model.cases import compare_case, load_fixtures
from mmetools.model.folder import ModelFolder
from mmetools.release.diff import DiffReport
from mmetools.release.published import PublishedVersion
from mmetools.rendering.console import StepRow
from mmetools.rendering.junit import write_diff_junit, write_steps_junit, write_test_junit
from mmetools.testing.source_test import ModelReport, RunResult

CONTROLS = "".join(chr(c) for c in range(0x01, 0x20) if chr(c) != "/")
HOSTILE = f"case{CONTROLS}\udcff-\ufffe"  # every C0 control, an undecodable byte, a non-char


def test_fixture_names_with_control_characters_and_lone_surrogates_parse(tmp_path: Path) -> None:
    model = ModelFolder(write_tiny_model(tmp_path))
    write_case(model.path, HOSTILE, [1.0, 2.0], [2.0, 5.0])  # a real file by that name
    cases = load_fixtures(model)
    assert HOSTILE in [case.name for case in cases]
    doubled = {"DOUBLED": np.array([[2.0, 4.0]], dtype=np.float32)}
    results = tuple(compare_case(case, doubled) for case in cases)
    report = ModelReport("tiny", "models/tiny", results, 1.0, (0.01, 0.01))
    path = tmp_path / "report.xml"
    write_test_junit(RunResult((report,), (0.1,)), path)
    root = ET.parse(path).getroot()  # the defect: "not well-formed (invalid token)"
    names = [case.attrib["name"] for case in root.iter("testcase")]
    expected = (
        "case"
        + "".join(ch if ch in "\t\n\r" else f"\\x{ord(ch):02x}" for ch in CONTROLS)
        + "\\xff-\\ufffe"
    )
    assert expected in names and "double" in names
    assert root.find("testsuite/testcase/failure") is not None


def test_every_writer_makes_names_and_messages_xml_safe(tmp_path: Path) -> None:
    steps = tmp_path / "steps.xml"
    write_steps_junit([StepRow(HOSTILE, "test", "failed", 0.1, f"boom {HOSTILE}"),
                       StepRow("m", HOSTILE, "skipped", 0.0, HOSTILE)], steps, HOSTILE)  # fmt: skip
    ET.parse(steps)
    diff = tmp_path / "diff.xml"
    write_diff_junit(DiffReport(HOSTILE, "c", None, note=HOSTILE, errors=(HOSTILE,)), diff)
    assert "\\x01" in ET.parse(diff).getroot().attrib["name"]


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("plain ünïcödé 𝄞 \t\n\r", "plain ünïcödé 𝄞 \t\n\r"),
        ("a\x00b\x1bc\x7f", "a\\x00b\\x1bc\x7f"),  # DEL is allowed by XML 1.0
        ("\ud800 \udcff \uffff", "\\ud800 \\xff \\uffff"),
    ],
)
def test_xml_safe(text: str, safe: str) -> None:
    from mmetools.rendering.junit import xml_safe

    assert xml_safe(text) == safe


def test_markdown_and_html_reports_take_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    """Sibling: the Markdown and HTML writers encoded strictly; a tarball argument with a byte
    that is not UTF-8 (a lone surrogate after os.fsdecode) was a UnicodeEncodeError traceback."""
    from dataclasses import replace

    from mmetools.rendering.html import write_html
    from mmetools.rendering.markdown import write_markdown_report
    from unit.rendering.test_html import STEPS, _result

    candidate = "dist/demo\udcff_1.tar.gz"
    markdown = tmp_path / "diff.md"
    note = f"no previous version of {candidate}"  # flips name fixture cases, as free as paths
    write_markdown_report(DiffReport("demo", candidate, None, note=note), markdown)
    assert "dist/demo\\udcff_1.tar.gz" in markdown.read_text(encoding="utf-8")
    html = tmp_path / "out" / "demo.loadtest.html"
    write_html(replace(_result(STEPS), source=candidate), html)
    assert "dist/demo\\udcff_1.tar.gz" in html.read_text(encoding="utf-8")
