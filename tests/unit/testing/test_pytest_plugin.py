"""The pytest plugin, used the way a model folder's own tests use it (pytester, real server)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_plugin_is_registered_and_adds_its_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["mmetools Triton fixtures:", "*--triton-mode=TRITON_MODE*"])
