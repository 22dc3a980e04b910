"""Simulated campaign responses follow the true rates they are given (binomial bounds)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from micromarketing.datasets.responses import TrueResponse, simulate_responses


def _assignments(n: int) -> pd.DataFrame:
    arms = ["control", "a", "b"] * (n // 3)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(len(arms))],
            "segment": ["vip" if i % 2 else "rest" for i in range(len(arms))],
            "arm": arms,
            "assigned_at": pd.Timestamp("2026-07-01T09:00Z"),
        }
    )


def test_conversion_rates_match_the_truth_and_orders_fall_inside_the_window():
    truth = {"vip": TrueResponse(0.10, {"a": 0.05, "b": 0.0}, 80.0), "rest": TrueResponse(0.02, {"a": 0.01})}
    frame = _assignments(60_000)
    orders = simulate_responses(frame, truth, window_days=7, currency="EUR", seed=1)
    bought = frame.assign(bought=frame.customer_id.isin(orders.customer_id))
    for (segment, arm), group in bought.groupby(["segment", "arm"]):
        p = truth[segment].rate(arm)
        se = math.sqrt(p * (1 - p) / len(group))
        assert abs(group.bought.mean() - p) < 4.5 * se, (segment, arm)
    at = pd.to_datetime(orders.ordered_at, utc=True)
    assert at.min() > pd.Timestamp("2026-07-01T09:00Z") and at.max() < pd.Timestamp("2026-07-08T09:00Z")
    vip = orders[orders.customer_id.isin(frame[frame.segment == "vip"].customer_id)]
    assert abs(vip.amount.mean() - 80.0) < 3.0
    assert orders.order_id.is_unique and (orders.currency == "EUR").all()


def test_the_same_seed_gives_the_same_orders_and_bad_truth_is_refused():
    truth = {"vip": TrueResponse(0.3, {"a": 0.1})}
    frame = _assignments(3_000)
    options = {"window_days": 7, "currency": "EUR", "seed": 5}
    one = simulate_responses(frame, truth, **options)
    two = simulate_responses(frame.sample(frac=1, random_state=2), truth, **options)
    pd.testing.assert_frame_equal(one, two)
    with pytest.raises(ValueError, match="outside"):
        simulate_responses(frame, {"vip": TrueResponse(0.95, {"a": 0.1})}, **options)


def test_members_the_message_never_reached_convert_at_the_baseline():
    truth = {"vip": TrueResponse(0.05, {"a": 0.25})}
    frame = _assignments(30_000).assign(segment="vip")
    frame["delivered"] = frame.index % 2 == 0
    orders = simulate_responses(frame, truth, window_days=7, currency="EUR", seed=3)
    treated = frame[frame.arm == "a"].assign(bought=lambda f: f.customer_id.isin(orders.customer_id))
    reached = treated[treated.delivered].bought.mean()
    missed = treated[~treated.delivered].bought.mean()
    assert abs(reached - 0.30) < 0.02 and abs(missed - 0.05) < 0.01
