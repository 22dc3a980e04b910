"""measure/stats.py against statsmodels (an independent implementation), to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from micromarketing.measure import stats
from micromarketing.measure.srm import check_srm

TOL = 1e-9


@st.composite
def two_arms(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_t = draw(st.integers(2, 100_000))
    n_c = draw(st.integers(2, 100_000))
    x_t = draw(st.integers(1, n_t - 1))
    x_c = draw(st.integers(1, n_c - 1))
    return x_t, n_t, x_c, n_c


@given(two_arms(), st.sampled_from([0.05, 0.01, 0.2]))
@settings(max_examples=200, deadline=None)
def test_proportions_match_statsmodels(arms: tuple[int, int, int, int], alpha: float) -> None:
    x_t, n_t, x_c, n_c = arms
    result = stats.two_proportion_test(x_t, n_t, x_c, n_c, alpha)
    _, p_value = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert result.absolute.p_value == pytest.approx(p_value, abs=TOL)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff", alpha=alpha)
    interval = result.absolute.interval
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=TOL)
    for interval, x, n in ((result.interval_treatment, x_t, n_t), (result.interval_control, x_c, n_c)):
        wl, wh = proportion_confint(x, n, alpha=alpha, method="wilson")
        assert (interval.low, interval.high) == pytest.approx((wl, wh), abs=TOL)
    assert result.absolute.estimate == pytest.approx(x_t / n_t - x_c / n_c, abs=TOL)


def _sample(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Revenue-like data: most zero, a few lognormal purchases."""
    buys = rng.random(n) < 0.2
    return np.where(buys, rng.lognormal(3, 1, n) * scale, 0.0)


@given(st.integers(0, 2**32 - 1), st.integers(3, 400), st.integers(3, 400), st.floats(0.5, 2))
@settings(max_examples=100, deadline=None)
def test_welch_matches_statsmodels(seed: int, n_t: int, n_c: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    y_t, y_c = _sample(rng, n_t, scale) + rng.random(n_t), _sample(rng, n_c, 1.0) + rng.random(n_c)
    result = stats.welch_test(stats.Moments.of(y_t), stats.Moments.of(y_c))
    t_stat, p_value, dof = ttest_ind(y_t, y_c, usevar="unequal")
    assert result.absolute.p_value == pytest.approx(p_value, abs=TOL)
    assert result.absolute.dof == pytest.approx(dof, rel=TOL)
    low, high = CompareMeans(DescrStatsW(y_t), DescrStatsW(y_c)).tconfint_diff(usevar="unequal")
    assert (result.absolute.interval.low, result.absolute.interval.high) == pytest.approx(
        (low, high), abs=TOL, rel=TOL
    )


def test_relative_lift_delta_method_matches_simulation() -> None:
    """The delta-method standard error of m_t/m_c − 1 agrees with the spread over many replicates."""
    rng = np.random.default_rng(7)
    lifts, errors = [], []
    for _ in range(1000):
        y_t, y_c = rng.exponential(12.0, 800), rng.exponential(10.0, 800)
        result = stats.welch_test(stats.Moments.of(y_t), stats.Moments.of(y_c))
        lifts.append(result.relative.estimate)
        errors.append(result.relative.std_error)
    assert np.mean(lifts) == pytest.approx(0.2, abs=0.01)
    assert np.mean(errors) == pytest.approx(np.std(lifts), rel=0.07)


P_VALUES = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40)


@given(P_VALUES)
@settings(max_examples=300, deadline=None)
def test_bh_p_values_match_multipletests(p_values: list[float]) -> None:
    theirs = multipletests(p_values, method="fdr_bh")[1]
    np.testing.assert_allclose(stats.adjust_p_values(p_values, "bh"), theirs, atol=TOL, rtol=0)


@given(P_VALUES)
@example([0.01, 0.01, 0.04, 1.0, 0.0])  # ties, both ends
@example([0.5])
@settings(max_examples=10, deadline=None)  # statsmodels runs gc.collect() in every Holm call
def test_holm_p_values_match_multipletests(p_values: list[float]) -> None:
    theirs = multipletests(p_values, method="holm")[1]
    np.testing.assert_allclose(stats.adjust_p_values(p_values, "holm"), theirs, atol=TOL, rtol=0)


def test_bh_adjusted_intervals_exclude_zero_exactly_when_discovered() -> None:
    """At α·R/m the interval of every BH discovery excludes 0 and every other one covers it."""
    rng = np.random.default_rng(3)
    arms = [
        (stats.Moments.of(rng.normal(shift, 5, 300)), stats.Moments.of(rng.normal(0, 5, 300)))
        for shift in [0.0, 0.0, 0.0, 2.0, 3.0, 0.5, 0.0, 4.0]
    ]
    p = [stats.welch_test(t, c).absolute.p_value for t, c in arms]
    level = stats.adjusted_alpha(p, "bh")
    discovered = stats.adjust_p_values(p, "bh") <= 0.05
    assert 0 < discovered.sum() < len(p)
    for (t, c), found in zip(arms, discovered, strict=True):
        interval = stats.welch_test(t, c, alpha=level).absolute.interval
        assert (not interval.contains(0.0)) == found
    assert stats.adjusted_alpha(p, "holm") == pytest.approx(0.05 / len(p))


def test_cuped_removes_the_variance_explained_by_pre_period_spend() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    pre_t, pre_c = rng.gamma(2, 20, n), rng.gamma(2, 20, n)
    post_t = 0.8 * pre_t + rng.normal(3, 10, n)
    post_c = 0.8 * pre_c + rng.normal(0, 10, n)
    t, c = stats.CovariateMoments.of(post_t, pre_t), stats.CovariateMoments.of(post_c, pre_c)
    plain = stats.welch_test(t.post, c.post)
    adjusted = stats.cuped_test(t, c)
    # θ pooled over both arms is the OLS slope of y on x with both arms stacked
    x, y = np.concatenate([pre_t, pre_c]), np.concatenate([post_t, post_c])
    assert adjusted.theta == pytest.approx(np.cov(x, y)[0, 1] / np.var(x, ddof=1), rel=TOL)
    rho2 = np.corrcoef(x, y)[0, 1] ** 2
    assert adjusted.variance_reduction == pytest.approx(rho2, abs=0.02)
    assert adjusted.absolute.std_error < plain.absolute.std_error
    assert adjusted.absolute.interval.contains(3.0)
    # with θ = 0 CUPED is the plain Welch test
    same = stats.cuped_test(t, c, theta=0.0)
    assert same.absolute.p_value == pytest.approx(plain.absolute.p_value, abs=TOL)
    assert same.variance_reduction == pytest.approx(0.0, abs=TOL)


def test_between_segment_variance_matches_statsmodels_dersimonian_laird() -> None:
    rng = np.random.default_rng(5)
    positive = 0
    for spread in (0.0, 0.05, 0.1, 0.3):
        se = rng.uniform(0.02, 0.2, 12)
        y = rng.normal(0.1, spread, 12) + rng.normal(0, se)
        theirs = combine_effects(y, se**2, method_re="dl").tau2
        positive += theirs > 0
        # statsmodels reports the raw moment estimate; a variance below zero is zero
        assert stats.between_segment_variance(y, se) == pytest.approx(max(theirs, 0.0), abs=TOL)
    assert positive >= 2


def test_shrinkage_pulls_small_segments_further() -> None:
    estimates = [0.5, 0.5, 0.05, 0.1]
    errors = [0.4, 0.05, 0.05, 0.05]
    shrunk = stats.shrink_toward(estimates, errors, overall=0.1)
    noisy, precise = shrunk[0], shrunk[1]
    assert abs(noisy.estimate - 0.1) < abs(precise.estimate - 0.1)
    assert noisy.weight < precise.weight
    for raw, s in zip(estimates, shrunk, strict=True):  # always between the raw value and the overall
        assert min(raw, 0.1) - TOL <= s.estimate <= max(raw, 0.1) + TOL
    # no spread between segments: everything is the overall lift
    flat = stats.shrink_toward([0.1, 0.1], [0.05, 0.05], overall=0.1)
    assert [s.estimate for s in flat] == pytest.approx([0.1, 0.1])
    # a segment without data gets the overall lift
    assert stats.shrink_toward([math.nan], [math.nan], overall=0.2)[0].estimate == 0.2


def test_confidence_sequence_is_wider_and_covers_at_every_look() -> None:
    """Peeking at a null campaign after every batch: the fixed interval excludes 0 at some look far
    more often than α, the confidence sequence about α or less."""
    rng = np.random.default_rng(1)
    fixed_misses = sequence_misses = 0
    runs = 100
    for _ in range(runs):
        y_t, y_c = rng.normal(0, 1, 4000), rng.normal(0, 1, 4000)
        fixed_hit = sequence_hit = False
        for n in range(200, 4001, 200):
            effect = stats.welch_test(stats.Moments.of(y_t[:n]), stats.Moments.of(y_c[:n])).absolute
            fixed_hit |= not effect.interval.contains(0.0)
            sequence_hit |= not stats.confidence_sequence(effect, 2 * n).contains(0.0)
        fixed_misses += fixed_hit
        sequence_misses += sequence_hit
    assert fixed_misses / runs > 0.15
    assert sequence_misses / runs <= 0.05


@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=5), st.data())
@settings(max_examples=100, deadline=None)
def test_srm_matches_scipy_free_formula(counts: list[int], data: st.DataObject) -> None:
    shares = data.draw(st.lists(st.floats(0.05, 1), min_size=len(counts), max_size=len(counts)))
    names = [f"arm{i}" for i in range(len(counts))]
    result = check_srm(dict(zip(names, counts, strict=True)), dict(zip(names, shares, strict=True)))
    total = sum(counts)
    if total == 0:
        assert result.p_value == 1.0 and not result.flagged
        return
    expected = [s / sum(shares) * total for s in shares]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    assert result.statistic == pytest.approx(chi2, rel=1e-9, abs=1e-9)
    assert result.flagged == (result.p_value < 0.001)


def test_srm_flags_a_broken_split() -> None:
    assert not check_srm({"control": 1010, "a": 8990}, {"control": 0.1, "a": 0.9}).flagged
    broken = check_srm({"control": 1300, "a": 8700}, {"control": 0.1, "a": 0.9})
    assert broken.flagged and broken.p_value < 1e-10
    assert broken.expected == {"control": pytest.approx(1000.0), "a": pytest.approx(9000.0)}
