"""Power figures against statsmodels' NormalIndPower with proportion_effectsize (independent
implementation of the same test), to 1e-6."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from micromarketing.measure.power import control_size_for_lift, minimum_detectable_lift, power_of
from micromarketing.segments.guards import minimum_detectable_lift as guard_mde

SOLVER = NormalIndPower()


@pytest.mark.parametrize(
    ("treatment", "control", "rate"),
    [(9000, 1000, 0.02), (450, 50, 0.05), (50_000, 50_000, 0.001), (120, 3000, 0.3)],
)
def test_mde_matches_statsmodels(treatment, control, rate):
    mde = minimum_detectable_lift(treatment, control, rate)
    h = SOLVER.solve_power(
        effect_size=None, nobs1=treatment, ratio=control / treatment, alpha=0.05, power=0.8
    )
    treated = rate + mde.absolute
    assert proportion_effectsize(treated, rate) == pytest.approx(h, abs=1e-6)
    assert SOLVER.power(
        proportion_effectsize(treated, rate), treatment, 0.05, ratio=control / treatment
    ) == pytest.approx(0.8, abs=1e-6)
    assert mde.relative == pytest.approx(mde.absolute / rate, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    treatment=st.integers(100, 200_000),
    control=st.integers(100, 50_000),
    rate=st.floats(0.005, 0.5),
)
def test_mde_property_against_statsmodels(treatment, control, rate):
    mde = minimum_detectable_lift(treatment, control, rate)
    if math.isinf(mde.absolute):
        return
    power = SOLVER.power(
        proportion_effectsize(rate + mde.absolute, rate), treatment, 0.05, ratio=control / treatment
    )
    assert power == pytest.approx(0.8, abs=1e-6)


def test_more_members_detect_smaller_lifts_close_to_the_segment_guard():
    small = minimum_detectable_lift(900, 100, 0.02).relative
    big = minimum_detectable_lift(900_000, 100_000, 0.02).relative
    assert big < small
    # for large groups the arcsine test agrees with the plain normal approximation of the guards
    assert big == pytest.approx(guard_mde(1_000_000, control_share=0.1, baseline_rate=0.02), rel=0.02)


def test_empty_or_hopeless_groups_are_infinite():
    assert math.isinf(minimum_detectable_lift(0, 100, 0.02).absolute)
    assert math.isinf(minimum_detectable_lift(1, 1, 0.02).relative)
    with pytest.raises(ValueError):
        minimum_detectable_lift(100, 100, 0.0)


@pytest.mark.parametrize(
    ("treatment", "rate", "lift"), [(9000, 0.02, 0.5), (20_000, 0.05, 0.1), (5000, 0.1, 0.25)]
)
def test_control_size_matches_statsmodels(treatment, rate, lift):
    control = control_size_for_lift(treatment, rate, lift)
    h = proportion_effectsize(rate * (1 + lift), rate)
    ratio = SOLVER.solve_power(effect_size=h, nobs1=treatment, alpha=0.05, power=0.8, ratio=None)
    assert control == math.ceil(ratio * treatment - 1e-6)
    assert power_of(h, treatment, control) >= 0.8 > power_of(h, treatment, control - 1)


def test_control_size_absolute_lift_and_impossible():
    assert control_size_for_lift(9000, 0.02, 0.01, relative=False) == control_size_for_lift(9000, 0.02, 0.5)
    # 100 treated members can never show a 1 % relative lift, whatever the control size
    assert control_size_for_lift(100, 0.02, 0.01) is None
