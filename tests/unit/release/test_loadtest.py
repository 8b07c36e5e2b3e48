"""mmetools loadtest: locust statistics, the suggested target, the local run through Triton's
SageMaker frontend, and the --endpoint path's requests against moto_server on loopback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmetools import cli
from mmetools.core.errors import LoadTestError
from mmetools.release.loadtest import LoadStep, parse_locust_stats, suggest_target

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
)


def _step(label: str, throughput: float, p99: float, failures: int = 0) -> LoadStep:
    return LoadStep(label, 1, None, 10, 100, failures, throughput, 1, 2, p99, 1)


def test_locust_statistics_come_from_the_aggregated_row(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(
        HEADER
        + "POST,invoke,120,2,7,9.5,3,80,40,59.9,1.0,7,8,9,10,20,30,40,50,80,80,80\n"
        + ",Aggregated,120,2,7,9.5,3,80,40,59.9,1.0,7,8,9,10,20,30,40,50,80,80,80\n"
    )
    assert parse_locust_stats(stats) == {
        "requests": 120,
        "failures": 2,
        "throughput": 59.9,
        "p50_ms": 7,
        "p90_ms": 20,
        "p99_ms": 50,
        "mean_ms": 9.5,
    }


def test_no_requests_give_nan_percentiles_and_missing_stats_an_error(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(HEADER + ",Aggregated,0,0,0,0,0,0,0,0,0" + ",N/A" * 11 + "\n")
    assert math.isnan(parse_locust_stats(stats)["p99_ms"])
    with pytest.raises(LoadTestError, match="locust wrote no statistics"):
        parse_locust_stats(tmp_path / "missing.csv")


def test_the_suggestion_is_the_best_step_within_budget_without_errors() -> None:
    steps = [
        _step("concurrency 1", 50, 40),
        _step("concurrency 4", 120, 90),
        _step("concurrency 8", 150, 400),  # over the budget
        _step("concurrency 16", 200, 60, failures=3),  # errors
    ]
    suggestion = suggest_target(steps, p99_budget_ms=100, safety_factor=0.5)
    assert (suggestion.step, suggestion.throughput) == ("concurrency 4", 120)
    assert suggestion.invocations_per_instance == 3600  # 120/s * 0.5 * 60
    assert "p99 <= 100 ms" in suggestion.method
    none = suggest_target(steps, p99_budget_ms=10, safety_factor=0.5)
    assert none.invocations_per_instance is None and "no step met the budget" in none.method


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["loadtest", "--endpoint", "e"], "--endpoint needs --target-model"),
        (["loadtest"], "give an artifact or a model folder, or --endpoint NAME"),
        (["loadtest", "models/x", "--concurrency", "1,two"], "give comma-separated whole numbers"),
        (["loadtest", "models/x", "--rates", "0"], "--rates: 0 requests/s; give a number above 0"),
    ],
)
def test_loadtest_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
