"""Budget reallocation: Thompson sampling on the posterior of ROI, judged against known truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micromarketing.errors import DataError, InvalidInputError
from micromarketing.measure.allocate import TrueArm, allocate_budget, simulate, thompson_shares
from micromarketing.measure.results import ArmKpis, CampaignMeasurement

MARGIN = 0.3
# One rare, high-value best arm whose first round is noisy, a safe runner-up, arms that lose money
# (the same truth as benchmarks/allocate_bench.py).
TRUTH = [
    TrueArm("vip", "a", 0.020, 0.005, 400.0, 0.5),
    TrueArm("vip", "b", 0.010, 0.005, 400.0, 0.5),
    TrueArm("lapsed", "a", 0.080, 0.040, 80.0, 0.5),
    TrueArm("lapsed", "b", 0.070, 0.040, 80.0, 0.5),
    TrueArm("new", "a", 0.030, 0.020, 60.0, 0.5),
    TrueArm("new", "b", 0.020, 0.020, 60.0, 0.5),
    TrueArm("loyal", "a", 0.110, 0.090, 70.0, 0.5),
    TrueArm("loyal", "b", 0.100, 0.090, 70.0, 0.5),
]


def _kpis(segment: str, arm: str, assigned: int, conversions: int, revenue: float, cost: float) -> ArmKpis:
    return ArmKpis(
        segment=segment,
        arm=arm,
        assigned=assigned,
        delivered=assigned if arm != "control" else 0,
        opens=0,
        clicks=0,
        engaged=0,
        conversions=conversions,
        conversion_rate=conversions / assigned,
        revenue=revenue,
        revenue_per_recipient=revenue / assigned,
        cost=cost,
        retained=0,
        retention=0.0,
    )


def _measurement(arms: list[ArmKpis]) -> CampaignMeasurement:
    return CampaignMeasurement(
        campaign="c",
        objective="conversion",
        status="finished",
        attribution="last_touch",
        attribution_days=7,
        retention_days=90,
        currency="USD",
        margin=MARGIN,
        adjustment="bh",
        measured_at=datetime(2026, 7, 1, tzinfo=UTC),
        arms=arms,
        comparisons=[],
    )


@given(st.integers(2, 12), st.floats(0, 0.3), st.integers(0, 2**31))
@settings(max_examples=100, deadline=None)
def test_shares_sum_to_one_above_the_floor(arms: int, floor: float, seed: int) -> None:
    draws = np.random.default_rng(seed).normal(size=(500, arms))
    shares, best = thompson_shares(draws, floor)
    assert shares.sum() == pytest.approx(1.0)
    assert best.sum() == pytest.approx(1.0)
    assert (shares >= min(floor, 1 / arms) - 1e-12).all()


def test_a_clear_winner_takes_all_but_the_floors() -> None:
    measurement = _measurement(
        [
            _kpis("s", "a", 5000, 500, 25_000.0, 500.0),  # 10% vs 2% in control: very profitable
            _kpis("s", "b", 5000, 110, 5_500.0, 500.0),
            _kpis("s", "control", 1000, 20, 1_000.0, 0.0),
        ]
    )
    result = allocate_budget(measurement, 1000.0, margin=MARGIN, min_share=0.05, draws=2000, seed=1)
    a, b = result.arms
    assert (a.variant, b.variant) == ("a", "b")
    assert a.share == pytest.approx(0.95) and b.share == pytest.approx(0.05)
    assert a.budget + b.budget == pytest.approx(1000.0)
    assert a.messages == 9500 and a.cost_per_message == pytest.approx(0.1)
    assert a.probability_best == pytest.approx(1.0) and a.roi_interval.low > 0
    assert a.explanation.startswith("s/a: 50% → 95% of the budget (up): highest ROI in 100% of 2000")
    assert "kept at the exploration floor of 5%" in b.explanation and "(down)" in b.explanation


def test_bad_requests_are_named() -> None:
    measurement = _measurement([_kpis("s", "a", 100, 5, 50.0, 10.0), _kpis("s", "control", 10, 0, 0.0, 0.0)])
    with pytest.raises(InvalidInputError, match="--budget must be positive"):
        allocate_budget(measurement, 0.0, margin=MARGIN)
    free = _measurement([_kpis("s", "a", 100, 5, 50.0, 0.0), _kpis("s", "control", 10, 0, 0.0, 0.0)])
    with pytest.raises(DataError, match="no arm has a cost"):
        allocate_budget(free, 100.0, margin=MARGIN)
    with pytest.raises(DataError, match="no variant arms"):
        allocate_budget(_measurement([_kpis("s", "control", 10, 0, 0.0, 0.0)]), 100.0, margin=MARGIN)


def test_thompson_earns_more_than_even_and_greedy_over_repeated_rounds() -> None:
    """40 rounds, 30 seeds (benchmarks/allocate_bench.py runs 100 seeds × 50 rounds).

    Greedy is a gamble: when round one shows it the rare best arm it wins, otherwise it stays on
    the runner-up for good.  Thompson sampling earns more on average, far more than the even
    split, and its bad seeds are much better than greedy's."""
    kwargs = {
        "rounds": 40,
        "budget": 400.0,
        "margin": MARGIN,
        "min_share": 0.01,
        "control_share": 0.2,
        "draws": 500,
    }
    scores = {
        policy: np.array([simulate(TRUTH, policy, seed=seed, **kwargs) for seed in range(30)])  # type: ignore[arg-type]
        for policy in ("thompson", "even", "greedy")
    }
    thompson, even, greedy = scores["thompson"], scores["even"], scores["greedy"]
    assert thompson.mean() > 5 * even.mean()
    assert thompson.mean() > greedy.mean()
    assert np.percentile(thompson, 20) > np.percentile(greedy, 20)


@st.composite
def campaigns(draw: st.DrawFn) -> CampaignMeasurement:
    arms = []
    for s in range(draw(st.integers(1, 3))):
        control_n = draw(st.integers(0, 500))
        arms.append(
            _kpis(f"s{s}", "control", max(control_n, 1), draw(st.integers(0, max(control_n, 1))), 0.0, 0.0)
        )
        for v in ("a", "b")[: draw(st.integers(1, 2))]:
            n = draw(st.integers(1, 5000))
            x = draw(st.integers(0, n))
            arms.append(
                _kpis(f"s{s}", v, n, x, draw(st.floats(0, 1e5)) if x else 0.0, draw(st.floats(0.01, 1e3)))
            )
    return _measurement(arms)


@given(campaigns(), st.floats(1, 1e7), st.floats(0, 0.4))
@settings(max_examples=60, deadline=None)
def test_any_measurement_allocates_the_whole_budget(
    measurement: CampaignMeasurement, budget: float, floor: float
) -> None:
    result = allocate_budget(measurement, budget, margin=MARGIN, min_share=floor, draws=200, seed=3)
    assert sum(a.share for a in result.arms) == pytest.approx(1.0)
    assert sum(a.budget for a in result.arms) == pytest.approx(budget)
    assert all(a.share >= result.min_share - 1e-12 and a.messages >= 0 for a in result.arms)
    assert all(a.explanation.startswith(f"{a.segment}/{a.variant}: ") for a in result.arms)
    json.loads(result.model_dump_json())
