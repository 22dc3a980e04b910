"""Assignment: deterministic, accurate shares (binomial bounds), independent across campaigns,
and the global holdout re-drawn per period."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, chi2_contingency

from micromarketing.campaigns.assign import (
    CONTROL,
    assign_arms,
    holdout_period,
    in_global_holdout,
    unit_hash,
    unit_hashes,
)
from micromarketing.config import CampaignSettings

IDS = [f"cust-{i}" for i in range(20_000)]


def _bounds(n: int, p: float) -> tuple[int, int]:
    """A two-sided 99.9 % binomial interval for a count."""
    return int(binom.ppf(0.0005, n, p)), int(binom.ppf(0.9995, n, p))


def test_unit_hash_is_blake2b_of_salt_and_key():
    digest = hashlib.blake2b(b"s\x1fk", digest_size=8).digest()
    assert unit_hash("s", "k") == int.from_bytes(digest, "big") / 2**64
    assert unit_hashes("s", ["k", "x"])[0] == unit_hash("s", "k")


def test_same_inputs_same_arms_in_any_order():
    variants = [("a", 0.5), ("b", 0.5)]
    first = assign_arms("spring", IDS, 0.1, variants)
    again = assign_arms("spring", IDS[::-1], 0.1, variants)[::-1]
    assert (first == again).all()
    alone = [assign_arms("spring", [c], 0.1, variants)[0] for c in IDS[:50]]
    assert list(first[:50]) == alone


@pytest.mark.parametrize(
    ("control", "variants"),
    [(0.1, [("a", 0.5), ("b", 0.5)]), (0.25, [("a", 0.2), ("b", 0.3), ("c", 0.5)]), (0.0, [("only", 1.0)])],
)
def test_shares_within_binomial_bounds(control, variants):
    arms = assign_arms("accuracy", IDS, control, variants)
    n = len(IDS)
    low, high = _bounds(n, control)
    assert low <= (arms == CONTROL).sum() <= high
    for name, share in variants:
        low, high = _bounds(n, (1 - control) * share)
        assert low <= (arms == name).sum() <= high, name


def test_campaigns_draw_independently():
    a = assign_arms("first", IDS, 0.5, [("t", 1.0)]) == CONTROL
    b = assign_arms("second", IDS, 0.5, [("t", 1.0)]) == CONTROL
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    assert chi2_contingency(table).pvalue > 0.001
    assert 0.45 < (a == b).mean() < 0.55


@settings(max_examples=200, deadline=None)
@given(
    control=st.floats(min_value=0, max_value=0.99),
    shares=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=5),
    campaign=st.text(min_size=1, max_size=10),
)
def test_every_member_gets_exactly_one_known_arm(control, shares, campaign):
    variants = [(f"v{i}", s / sum(shares)) for i, s in enumerate(shares)]
    arms = assign_arms(campaign, IDS[:300], control, variants)
    assert set(arms) <= {CONTROL, *(n for n, _ in variants)}
    if control == 0:
        assert CONTROL not in set(arms)


def test_global_holdout_share_and_period():
    off = in_global_holdout(IDS, CampaignSettings())
    assert not off.any()
    cfg = CampaignSettings(global_holdout_share=0.05, holdout_period_days=30)
    now = datetime(2026, 7, 1, tzinfo=UTC)
    held = in_global_holdout(IDS, cfg, now)
    low, high = _bounds(len(IDS), 0.05)
    assert low <= held.sum() <= high
    period = holdout_period(now.date(), 30)
    first_day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=30 * period)
    last_day = first_day + timedelta(days=29, hours=23)
    assert holdout_period(last_day.date(), 30) == period
    assert (in_global_holdout(IDS, cfg, first_day) == held).all()
    assert (in_global_holdout(IDS, cfg, last_day) == held).all()
    next_period = now + timedelta(days=30)
    redrawn = in_global_holdout(IDS, cfg, next_period)
    assert holdout_period(next_period.date(), 30) == holdout_period(now.date(), 30) + 1
    assert not (redrawn == held).all()
    assert low <= redrawn.sum() <= high
    # the holdout does not depend on any campaign: it is the same whichever campaign asks
    assert (in_global_holdout(IDS[::-1], cfg, now)[::-1] == held).all()
