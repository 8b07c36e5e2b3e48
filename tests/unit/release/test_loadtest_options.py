"""Every loadtest option is checked before any work starts: usage errors, exit 2, the option named.

Defect (issue 20, #16): ``--rates nan`` failed with a traceback after the whole closed-loop run,
``--rates inf`` and an ``--out`` naming a file ended in tracebacks, ``--instance-memory -1`` was
accepted ("models per instance: 0"). Here the work (the serving env, locust) is replaced by a
tripwire: a row passes only if the command stops before it.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import MODELS_DIR
from mmetools import cli
from mmetools.core.errors import UsageError
from mmetools.core.settings import load_settings
from mmetools.release import loadtest
from mmetools.release.loadtest_options import check_loadtest_options, parse_concurrency, parse_rates


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A model folder in tmp_path (the current folder); any work raises WorkStarted."""

    def work(*_: Any, **__: Any) -> Any:
        raise WorkStarted("the load test started working before its options were checked")

    monkeypatch.setattr(loadtest, "ensure_serving_env", work)
    monkeypatch.setattr(loadtest, "run_locust", work)
    monkeypatch.setattr(loadtest, "_cases", work)
    import mmetools.cli.serving

    monkeypatch.setattr(mmetools.cli.serving, "fleet_loadtest", work)
    shutil.copytree(MODELS_DIR / "intent_classifier", tmp_path / "models" / "intent_classifier",
                    ignore=shutil.ignore_patterns("python_env.tar.gz", "*.onnx"))  # fmt: skip
    (tmp_path / "a-file").write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


LOCAL = ["loadtest", "models/intent_classifier"]
ENDPOINT = ["loadtest", "--endpoint", "e", "--target-model", "intent_classifier_1.tar.gz"]
FLEET = ["loadtest", "--endpoint", "e", "--models", "a_1.tar.gz,b_1.tar.gz"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (LOCAL + ["--rates", "nan"], "error: --rates: nan requests/s; give a number above 0"),
        (LOCAL + ["--rates", "inf"], "error: --rates: inf requests/s; give a number above 0"),
        (LOCAL + ["--rates", "5,-inf"], "error: --rates: -inf requests/s"),
        (LOCAL + ["--rates", "1e400"], "error: --rates: inf requests/s"),
        (LOCAL + ["--rates", "-1"], "error: --rates: -1 requests/s"),
        (LOCAL + ["--rates", "fast"], "error: --rates 'fast': 'fast' is not a number"),
        (LOCAL + ["--concurrency", "1.5"], "error: --concurrency '1.5': '1.5' is not a whole number"),
        (LOCAL + ["--concurrency", "nan"], "error: --concurrency 'nan': 'nan' is not a whole number"),
        (LOCAL + ["--concurrency", "0"], "error: --concurrency: 0 users; give 1 to 10000"),
        (LOCAL + ["--concurrency", "1000000"], "error: --concurrency: 1000000 users; give 1 to 10000"),
        (LOCAL + ["--concurrency", ""], "error: --concurrency and --rates are both empty"),
        # nan fails click's own range checks (its message); inf passed them
        (LOCAL + ["--seconds", "nan"], "Invalid value for '--seconds'"),
        (LOCAL + ["--seconds", "inf"], "error: --seconds inf: give a duration in seconds from 1 to"),
        (LOCAL + ["--p99-budget-ms", "nan"], "Invalid value for '--p99-budget-ms'"),
        (LOCAL + ["--p99-budget-ms", "inf"], "error: --p99-budget-ms inf: give a latency in ms"),
        (LOCAL + ["--safety-factor", "nan"], "Invalid value for '--safety-factor'"),
        (LOCAL + ["--instance-memory", "-1"], "error: --instance-memory -1: give the instance's memory"),
        (LOCAL + ["--instance-memory", "0"], "error: --instance-memory 0: give the instance's memory"),
        (LOCAL + ["--instance-memory", "nan"], "error: --instance-memory nan: give"),
        (LOCAL + ["--instance-memory", "inf"], "error: --instance-memory inf: give"),
        (LOCAL + ["--out", "a-file"], "error: --out a-file: is a file, not a folder"),
        (LOCAL + ["--out", "a-file/reports"], "error: --out a-file/reports: a-file is a file, not a folder"),
        (["loadtest", "models/nothing"], "error: models/nothing: no such artifact or model folder"),
        (["loadtest", "dist/x_1.tar.gz"], "error: dist/x_1.tar.gz: no such artifact or model folder"),
        (LOCAL + ["--target-model", "x_1.tar.gz"], "error: --target-model: only with --endpoint NAME"),
        (LOCAL + ["--model", "models/intent_classifier"], "error: --model: only with --endpoint NAME"),
        (ENDPOINT + ["--instance-memory", "16"], "error: --instance-memory: only for a local load test"),
        (ENDPOINT + ["--rates", "nan"], "error: --rates: nan requests/s"),
        (ENDPOINT + ["--out", "a-file"], "error: --out a-file: is a file, not a folder"),
        # the fleet load test (loadtest --endpoint --models|--prefix) checks first too
        (FLEET + ["--rates", "nan"], "error: --rates: nan requests/s"),
        (FLEET + ["--rates", "1,2"], "error: --rates '1,2': a fleet load test takes one rate"),
        (FLEET + ["--seconds", "inf"], "error: --seconds inf: give a duration"),
        (FLEET + ["--users", "100000"], "error: --users: 100000 users; give 1 to 10000"),
        (FLEET + ["--cold-threshold-ms", "nan"], "error: --cold-threshold-ms nan: give a latency"),
        (FLEET + ["--cold-threshold-ms", "-5"], "error: --cold-threshold-ms -5: give a latency"),
        (FLEET + ["--out", "a-file"], "error: --out a-file: is a file, not a folder"),
        (LOCAL + ["--models", "a_1.tar.gz"], "error: --models: only with --endpoint NAME"),
    ],
)  # fmt: skip
def test_bad_options_stop_before_any_work(
    tripwire: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] if "Invalid" in message else err.startswith(message)
    assert "Traceback" not in err


def test_the_library_checks_its_options_before_any_work(tripwire: Path) -> None:
    """Library callers get the same checks (loadtest_local, loadtest_endpoint)."""
    settings = load_settings()
    folder = Path("models/intent_classifier")
    with pytest.raises(UsageError, match=r"^--rates: nan requests/s"):
        loadtest.loadtest_local(folder, settings, rates=[math.nan])
    with pytest.raises(UsageError, match=r"^--instance-memory -1: "):
        loadtest.loadtest_local(folder, settings, instance_memory_gib=-1)
    with pytest.raises(UsageError, match=r"^--seconds inf: "):
        loadtest.loadtest_endpoint("e", "m_1.tar.gz", None, seconds=math.inf)  # type: ignore[arg-type]


def test_good_options_parse() -> None:
    assert parse_concurrency("1, 2,4,") == (1, 2, 4)
    assert parse_rates("") == () and parse_rates("0.5,10") == (0.5, 10.0)
    check_loadtest_options(concurrency=(), rates=(5.0,), seconds=1, p99_budget_ms=1,
                           safety_factor=1, instance_memory_gib=0.5)  # fmt: skip


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_mmetools_test_checks_instance_memory_before_any_run(
    tripwire: Path, monkeypatch: pytest.MonkeyPatch, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sibling: `mmetools test --instance-memory nan` ran every test, then int(nan) failed."""
    from mmetools.testing import source_test

    def run(*_: Any, **__: Any) -> Any:
        raise WorkStarted("tests started before --instance-memory was checked")

    monkeypatch.setattr(source_test, "run_models", run)
    assert cli.main(["test", "models/intent_classifier", "--instance-memory", value]) == 2
    assert capsys.readouterr().err.startswith(f"error: --instance-memory {value}: give the")
