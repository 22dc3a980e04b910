"""The statistics of a campaign comparison: pure functions over sufficient statistics.

Every test here works from per-arm sums (count, sum, sum of squares, and for CUPED the sums of the
pre-period covariate and of the cross products), so the warehouse aggregates in SQL and Python
only does the arithmetic.  Conversions use the two-proportion z-test with Wilson intervals per arm
and Newcombe's hybrid-score interval of the difference; money uses Welch's t-test; relative lifts
use the delta method (as GrowthBook's gbstats does); CUPED pools θ over both arms; many segments
are corrected with Benjamini–Hochberg (default) or Holm, with adjusted intervals; small segments
are shrunk toward the campaign's overall lift (empirical Bayes); and an asymptotic confidence
sequence gives intervals that stay valid however often a running campaign is looked at.

The tests check these functions against statsmodels (to 1e-9) and gbstats 0.8.0 (to 1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
Adjustment = Literal["bh", "holm", "none"]


@dataclass(frozen=True)
class Moments:
    """The sufficient statistics of one arm for one metric: count, sum and sum of squares."""

    n: int
    total: float
    total_squares: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Moments:
        array = np.asarray(values, dtype=float)
        return cls(int(array.size), float(array.sum()), float(np.square(array).sum()))

    @classmethod
    def binary(cls, successes: int, n: int) -> Moments:
        """A 0/1 metric: the sum of squares equals the sum."""
        return cls(n, float(successes), float(successes))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n − 1 in the denominator); 0 for fewer than two units."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.total_squares - self.total**2 / self.n) / (self.n - 1))


@dataclass(frozen=True)
class CovariateMoments:
    """One arm's outcome ``y`` and pre-period covariate ``x`` (CUPED): their moments and Σxy."""

    post: Moments
    pre: Moments
    cross: float  # Σ x·y

    @classmethod
    def of(cls, post: Sequence[float] | np.ndarray, pre: Sequence[float] | np.ndarray) -> CovariateMoments:
        y, x = np.asarray(post, dtype=float), np.asarray(pre, dtype=float)
        return cls(Moments.of(y), Moments.of(x), float((x * y).sum()))

    @property
    def covariance(self) -> float:
        n = self.post.n
        if n < 2:
            return 0.0
        return (self.cross - self.post.total * self.pre.total / n) / (n - 1)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Effect:
    """One estimate of a difference (absolute or relative) with its interval and p-value."""

    estimate: float
    std_error: float
    interval: Interval
    p_value: float
    dof: float = math.inf  # degrees of freedom of the reference distribution (inf: normal)


@dataclass(frozen=True)
class ProportionComparison:
    """Treatment against control on a 0/1 metric (converted or not)."""

    rate_treatment: float
    rate_control: float
    interval_treatment: Interval  # Wilson
    interval_control: Interval  # Wilson
    absolute: Effect  # difference, Newcombe interval, pooled z-test p-value
    relative: Effect  # (p_t − p_c) / p_c, delta method


@dataclass(frozen=True)
class MeanComparison:
    """Treatment against control on a money metric (revenue per recipient), Welch's t."""

    mean_treatment: float
    mean_control: float
    absolute: Effect
    relative: Effect
    variance_reduction: float = 0.0  # CUPED: 1 − Var(adjusted)/Var(raw) of the difference
    theta: float = 0.0


# -- proportions ---------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, alpha: float = ALPHA) -> Interval:
    """Wilson score interval of a proportion (good coverage even near 0 and for small n)."""
    if n <= 0:
        return Interval(math.nan, math.nan)
    z = sps.norm.isf(alpha / 2)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return Interval(centre - half, centre + half)


def newcombe_interval(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = ALPHA) -> Interval:
    """Newcombe's hybrid-score interval of p_t − p_c, built from the two Wilson intervals."""
    p_t, p_c = x_t / n_t, x_c / n_c
    w_t, w_c = wilson_interval(x_t, n_t, alpha), wilson_interval(x_c, n_c, alpha)
    diff = p_t - p_c
    low = diff - math.hypot(p_t - w_t.low, w_c.high - p_c)
    high = diff + math.hypot(w_t.high - p_t, p_c - w_c.low)
    return Interval(low, high)


def two_proportion_test(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = ALPHA) -> ProportionComparison:
    """Conversion rate of treatment vs control: pooled z-test, Wilson and Newcombe intervals.

    The relative lift's interval is the delta method on the ratio of the two rates with Welch's
    degrees of freedom on the Bernoulli variances p(1 − p), as gbstats does for proportions."""
    if n_t <= 0 or n_c <= 0:
        raise ValueError("both arms need at least one member")
    p_t, p_c = x_t / n_t, x_c / n_c
    pooled = (x_t + x_c) / (n_t + n_c)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    if se_pooled > 0:
        z = (p_t - p_c) / se_pooled
        p_value = float(2 * sps.norm.sf(abs(z)))
    else:
        p_value = 1.0 if p_t == p_c else 0.0
    se_diff = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    absolute = Effect(p_t - p_c, se_diff, newcombe_interval(x_t, n_t, x_c, n_c, alpha), p_value)
    var_t, var_c = p_t * (1 - p_t), p_c * (1 - p_c)
    dof = welch_dof(var_t, n_t, var_c, n_c)
    relative = _relative_effect(p_t, var_t / n_t, p_c, var_c / n_c, alpha, dof)
    return ProportionComparison(
        p_t, p_c, wilson_interval(x_t, n_t, alpha), wilson_interval(x_c, n_c, alpha), absolute, relative
    )


# -- means -------------------------------------------------------------------------------
def welch_dof(var_t: float, n_t: int, var_c: float, n_c: int) -> float:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    a, b = var_t / n_t, var_c / n_c
    denominator = (a * a / (n_t - 1) if n_t > 1 else 0.0) + (b * b / (n_c - 1) if n_c > 1 else 0.0)
    return (a + b) ** 2 / denominator if denominator > 0 else math.inf


def welch_test(treatment: Moments, control: Moments, alpha: float = ALPHA) -> MeanComparison:
    """Mean of treatment vs control with Welch's t (unequal variances), absolute and relative.

    The relative lift (m_t − m_c)/m_c uses the delta-method variance and the same Welch degrees of
    freedom, which is what gbstats' frequentist t-test does."""
    if treatment.n < 1 or control.n < 1:
        raise ValueError("both arms need at least one member")
    var_t, var_c = treatment.variance, control.variance
    dof = welch_dof(var_t, treatment.n, var_c, control.n)
    m_t, m_c = treatment.mean, control.mean
    absolute = _effect(m_t - m_c, var_t / treatment.n + var_c / control.n, alpha, dof)
    relative = _relative_effect(m_t, var_t / treatment.n, m_c, var_c / control.n, alpha, dof)
    return MeanComparison(m_t, m_c, absolute, relative)


def cuped_theta(treatment: CovariateMoments, control: CovariateMoments) -> float:
    """θ = Cov(y, x) / Var(x) pooled over both arms (the same θ keeps the comparison unbiased)."""
    n = treatment.post.n + control.post.n
    sum_x = treatment.pre.total + control.pre.total
    sum_y = treatment.post.total + control.post.total
    sxx = treatment.pre.total_squares + control.pre.total_squares - sum_x**2 / n
    sxy = treatment.cross + control.cross - sum_x * sum_y / n
    return sxy / sxx if sxx > 0 else 0.0


def cuped_test(
    treatment: CovariateMoments, control: CovariateMoments, alpha: float = ALPHA, theta: float | None = None
) -> MeanComparison:
    """Welch's t on the CUPED-adjusted outcome y − θ·x (θ pooled), absolute and relative.

    Each arm's adjusted mean is ȳ − θ·x̄ and its variance Var(y) + θ²Var(x) − 2θCov(x, y); the
    relative lift divides the adjusted difference by the control's unadjusted mean, its delta-method
    variance uses the unadjusted means with the adjusted variances (as gbstats does).
    ``variance_reduction`` is 1 − Var(adjusted difference)/Var(raw difference)."""
    theta = cuped_theta(treatment, control) if theta is None else theta
    arms = []
    for arm in (treatment, control):
        var = arm.post.variance + theta**2 * arm.pre.variance - 2 * theta * arm.covariance
        arms.append((arm.post.mean - theta * arm.pre.mean, max(var, 0.0), arm.post.n))
    (m_t, var_t, n_t), (m_c, var_c, n_c) = arms
    dof = welch_dof(var_t, n_t, var_c, n_c)
    raw_var = treatment.post.variance / n_t + control.post.variance / n_c
    adjusted_var = var_t / n_t + var_c / n_c
    absolute = _effect(m_t - m_c, adjusted_var, alpha, dof)
    base = control.post.mean
    if base:
        rel_var = _ratio_variance(treatment.post.mean, var_t / n_t, base, var_c / n_c)
        relative = _effect((m_t - m_c) / base, rel_var, alpha, dof)
    else:
        relative = Effect(math.nan, math.nan, Interval(math.nan, math.nan), math.nan, dof)
    reduction = 1 - adjusted_var / raw_var if raw_var > 0 else 0.0
    return MeanComparison(treatment.post.mean, control.post.mean, absolute, relative, reduction, theta)


def _ratio_variance(mean_num: float, var_num: float, mean_den: float, var_den: float) -> float:
    """Delta-method variance of mean_num/mean_den for independent estimates."""
    return var_num / mean_den**2 + var_den * mean_num**2 / mean_den**4


def _relative_effect(
    mean_t: float, var_mean_t: float, mean_c: float, var_mean_c: float, alpha: float, dof: float
) -> Effect:
    if mean_c == 0:
        return Effect(math.nan, math.nan, Interval(math.nan, math.nan), math.nan, dof)
    return _effect(mean_t / mean_c - 1, _ratio_variance(mean_t, var_mean_t, mean_c, var_mean_c), alpha, dof)


def _effect(estimate: float, variance: float, alpha: float, dof: float) -> Effect:
    """Estimate ± quantile·se, two-sided p-value, t with ``dof`` degrees of freedom (inf: normal)."""
    se = math.sqrt(variance) if variance >= 0 else math.nan
    if se > 0:
        p_value = 2 * _upper_tail(abs(estimate) / se, dof)
    else:
        p_value = 1.0 if estimate == 0 else 0.0
    q = _quantile(alpha, dof)
    return Effect(estimate, se, Interval(estimate - q * se, estimate + q * se), p_value, dof)


def _upper_tail(x: float, dof: float) -> float:
    return float(sps.norm.sf(x) if math.isinf(dof) else sps.t.sf(x, dof))


def _quantile(alpha: float, dof: float) -> float:
    """The two-sided critical value at level 1 − ``alpha``."""
    return float(sps.norm.isf(alpha / 2) if math.isinf(dof) else sps.t.isf(alpha / 2, dof))


# -- many comparisons ----------------------------------------------------------------------
def adjust_p_values(p_values: Sequence[float], method: Adjustment = "bh") -> np.ndarray:
    """Benjamini–Hochberg (false discovery rate) or Holm (family-wise error) adjusted p-values."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    if method == "bh":
        scaled = ranked * m / np.arange(1, m + 1)
        adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    elif method == "holm":
        scaled = ranked * (m - np.arange(m))
        adjusted_sorted = np.maximum.accumulate(scaled)
    else:
        raise ValueError(f"unknown adjustment {method!r}; use 'bh', 'holm' or 'none'")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


def adjusted_alpha(p_values: Sequence[float], method: Adjustment = "bh", alpha: float = ALPHA) -> float:
    """The per-interval level that matches the adjustment of ``p_values``.

    Holm: Bonferroni's α/m (simultaneous coverage).  BH: Benjamini–Yekutieli's false-coverage
    rate interval at α·R/m with R the number of discoveries (at least 1), so an adjusted interval
    excludes zero exactly when its BH-adjusted p-value is below α."""
    m = len(p_values)
    if m == 0 or method == "none":
        return alpha
    if method == "holm":
        return alpha / m
    discoveries = int((adjust_p_values(p_values, "bh") <= alpha).sum())
    return alpha * max(discoveries, 1) / m


# -- small segments ------------------------------------------------------------------------
@dataclass(frozen=True)
class Shrunk:
    estimate: float
    std_error: float
    weight: float  # share of the raw estimate kept (1: no shrinkage)


def between_segment_variance(estimates: Sequence[float], std_errors: Sequence[float]) -> float:
    """DerSimonian–Laird moment estimate of τ², the true spread of lifts between segments."""
    y, se = np.asarray(estimates, dtype=float), np.asarray(std_errors, dtype=float)
    if y.size < 2:
        return 0.0
    w = 1 / se**2
    pooled = (w * y).sum() / w.sum()
    q = (w * (y - pooled) ** 2).sum()
    c = w.sum() - (w**2).sum() / w.sum()
    return float(max(0.0, (q - (y.size - 1)) / c))


def shrink_toward(
    estimates: Sequence[float], std_errors: Sequence[float], overall: float, tau2: float | None = None
) -> list[Shrunk]:
    """Empirical-Bayes (normal–normal) shrinkage of each segment's lift toward ``overall``.

    With τ² the between-segment variance, a segment keeps the share τ²/(τ² + se²) of its own
    deviation from the overall lift: a noisy small segment moves most of the way to the
    campaign's lift, a large one stays near its own.  A segment with no standard error (no data)
    gets the overall lift."""
    se = np.asarray(std_errors, dtype=float)
    y = np.asarray(estimates, dtype=float)
    usable = np.isfinite(y) & np.isfinite(se) & (se > 0)
    if tau2 is None:
        tau2 = between_segment_variance(y[usable], se[usable])
    out = []
    for value, error, ok in zip(y, se, usable, strict=True):
        if not ok:
            out.append(Shrunk(overall, math.nan, 0.0))
            continue
        weight = tau2 / (tau2 + error**2)
        out.append(Shrunk(overall + weight * (value - overall), math.sqrt(weight) * error, weight))
    return out


# -- monitoring a running campaign ---------------------------------------------------------
def confidence_sequence_rho(alpha: float = ALPHA, tuning: float = 5000.0) -> float:
    """ρ of the asymptotic confidence sequence, tuned so the sequence is tightest near ``tuning`` units."""
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def confidence_sequence(effect: Effect, n: int, alpha: float = ALPHA, tuning: float = 5000.0) -> Interval:
    """Always-valid interval (Waudby-Smith et al.'s asymptotic confidence sequence, as in gbstats).

    ``n`` is the number of units seen so far over both arms; the half-width is
    se·√n·√(2(nρ² + 1)/(n²ρ²) · log(√(nρ² + 1)/α)), wider than the fixed-horizon interval and
    valid at every look."""
    rho = confidence_sequence_rho(alpha, tuning)
    scale = effect.std_error * math.sqrt(n)
    half = scale * math.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha)
    )
    return Interval(effect.estimate - half, effect.estimate + half)


def sequential_p_value(effect: Effect, n: int, alpha: float = ALPHA, tuning: float = 5000.0) -> float:
    """Always-valid p-value matching :func:`confidence_sequence` (1/e-value, capped at 1)."""
    if not effect.std_error > 0:
        return 1.0 if effect.estimate == 0 else 0.0
    rho2 = confidence_sequence_rho(alpha, tuning) ** 2
    st2 = effect.estimate**2 / effect.std_error**2  # (estimate/se)²; the n's of gbstats cancel
    tr2p1 = n * rho2 + 1
    log_evalue = rho2 * n * st2 / (2 * tr2p1) - 0.5 * math.log(tr2p1)
    return float(min(1.0, math.exp(-log_evalue)))
