"""Traffic mixes, the capacity plan's hit-ratio predictions and plan rules, the metrics' texts and
the fleet summary (no server)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmetools.core.errors import UsageError
from mmetools.release.loadtest import LoadStep
from mmetools.serving.capacity import (
    ModelProfile,
    che_hit_ratio,
    plan_capacity,
    simulated_hit_ratio,
)
from mmetools.serving.cache import HIT, MISS, LoadOutcome
from mmetools.serving.fleet import summarize
from mmetools.serving.metrics import EndpointMetrics, prometheus_text
from mmetools.serving.traffic import parse_mix

MiB = 1024 * 1024
MODELS = [f"m{i}_1.tar.gz" for i in range(20)]


def test_zipf_mix_favours_the_first_models_and_sums_to_one() -> None:
    mix = parse_mix("zipf:1.2", MODELS)
    assert math.isclose(sum(mix.shares), 1.0)
    assert list(mix.shares) == sorted(mix.shares, reverse=True)
    assert mix.shares[0] / mix.shares[1] == pytest.approx(2**1.2)
    assert parse_mix("uniform", MODELS[:4]).shares == (0.25,) * 4


def test_csv_mix_normalises_rates_and_names_a_bad_row(tmp_path: Path) -> None:
    good = tmp_path / "rates.csv"
    good.write_text("target_model,rate\nm0_1.tar.gz,3\nm1_1.tar.gz,1\n")
    mix = parse_mix(str(good), MODELS[:3])
    assert mix.shares == (0.75, 0.25, 0.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("target_model,rate\nm0_1.tar.gz,fast\n")
    with pytest.raises(UsageError, match=r"bad.csv:2: rate 'fast' of m0_1.tar.gz is not a number"):
        parse_mix(str(bad), MODELS)
    with pytest.raises(UsageError, match="zipf:S with a number"):
        parse_mix("zipf:x", MODELS)


def profiles(exponent: float = 1.2) -> list[ModelProfile]:
    mix = parse_mix(f"zipf:{exponent}", MODELS)
    return [
        ModelProfile(m, (220 if i % 2 else 310) * MiB, 25.0, s)
        for i, (m, s) in enumerate(zip(mix.models, mix.shares))
    ]


@pytest.mark.parametrize("slots", [3, 5, 8])
def test_che_approximation_agrees_with_a_long_lru_simulation(slots: int) -> None:
    capacity = slots * 265 * MiB
    che = che_hit_ratio(profiles(), capacity)
    simulated = simulated_hit_ratio(profiles(), capacity, 5000, repeats=5)
    assert abs(che - simulated) < 0.06, (che, simulated)  # 5.8 points at 3 slots


def test_everything_fits_means_every_request_hits_in_steady_state() -> None:
    assert che_hit_ratio(profiles(), 20 * 310 * MiB) == 1.0


def test_plan_needs_99_percent_hits_when_a_miss_breaks_the_p99_budget() -> None:
    plan = plan_capacity(
        profiles(), mix="zipf:1.2", request_rate=10, per_instance_rate=20, warm_p99_ms=30,
        target_hit_ratio=0.8, p99_budget_ms=500,
    )  # fmt: skip
    assert plan.required_hit_ratio == 0.99
    assert plan.chosen is not None and plan.chosen.hit_ratio >= 0.99
    assert plan.invocations_per_instance == 600  # 20/s x 0.5 x 60
    assert plan.model_cache_setting == "Enabled"


def test_plan_suggests_disabling_the_cache_for_rarely_invoked_models() -> None:
    flat = [ModelProfile(f"m{i}", 300 * MiB, 20.0, 1 / 5000) for i in range(5000)]
    plan = plan_capacity(
        flat, mix="uniform", request_rate=1, per_instance_rate=20, warm_p99_ms=30,
        sizes_gib=(8,), max_instances=3, p99_budget_ms=60000,
    )  # fmt: skip
    assert plan.chosen is None
    assert plan.model_cache_setting == "Disabled"


def test_metrics_use_cloudwatch_names_and_prometheus_text() -> None:
    metrics = EndpointMetrics(4 * 1024**3, memory_sample=lambda: 1024**3)
    metrics.request("a", MISS, 2.0)
    metrics.loaded("a", LoadOutcome(None, 300 * MiB, 0.5, 1.5))
    metrics.request("a", HIT, 0.0)
    metrics.invocation("a", 0.02, True)
    metrics.unloaded("a", 0.3, "evicted")
    snapshot = metrics.snapshot()
    assert snapshot["ModelCacheHit"] == {"sum": 1, "sample_count": 2, "average": 0.5}
    assert snapshot["MemoryUtilization"] == 25.0
    assert snapshot["ModelLoadingWaitTime"]["sum"] == 2.0
    assert snapshot["per_target_model"]["a"]["memory_bytes"] == 300 * MiB
    text = prometheus_text(snapshot)
    assert "# TYPE mme_model_cache_hit_total counter\nmme_model_cache_hit_total 1" in text
    assert "mme_evictions_total 1" in text
    assert 'mme_target_model_latency_seconds_q099{target_model="a"} 0.02' in text


def test_fleet_summary_classifies_by_header_or_by_latency() -> None:
    step = LoadStep("fleet", 1, None, 60, 4, 0, 0.1, 30, 30, 30, 30)
    log = [
        {"t": 0, "model": "a", "state": MISS, "ms": 25000.0, "error": "", "outputs_ok": True},
        {"t": 25, "model": "a", "state": HIT, "ms": 20.0, "error": "", "outputs_ok": True},
        {"t": 26, "model": "a", "state": HIT, "ms": 30.0, "error": "", "outputs_ok": True},
        {"t": 27, "model": "b", "state": "", "ms": 9.0, "error": "ModelNotReadyException"},
    ]
    mix = parse_mix("uniform", ["a", "b"])
    result = summarize("e", "", mix, step, log, None, None, None, 1000.0)
    assert result.classified_by == "endpoint header"
    assert (result.hit_ratio, result.cold.requests, result.warm.p99_ms) == (2 / 3, 1, 30.0)
    assert result.errors == {"ModelNotReadyException": 1}
    real = [dict(r, state="") for r in log[:3]]
    by_latency = summarize("e", "", mix, step, real, None, None, None, 1000.0)
    assert by_latency.classified_by == "latency > 1000 ms" and by_latency.hit_ratio == 2 / 3
