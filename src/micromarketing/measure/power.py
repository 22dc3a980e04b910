"""Statistical power of a campaign's control/treatment comparison of two conversion rates.

The test is the two-sided z-test on Cohen's effect size for proportions,
``h = 2·asin(√p_t) − 2·asin(√p_c)`` (variance-stabilised, so the power does not depend on the
rate itself), with power ``Φ(h√n − z) + Φ(−h√n − z)``, ``n = 1 / (1/n_t + 1/n_c)`` and
``z = Φ⁻¹(1 − α/2)`` — the same model as statsmodels' ``NormalIndPower`` with
``proportion_effectsize``, which the tests use as the independent check.

* :func:`minimum_detectable_lift` — the smallest rise over a baseline rate the test detects
  with the given power (absolute and relative), for given group sizes;
* :func:`control_size_for_lift` — the control group needed to detect a given lift next to a
  treatment group of a given size (None when no control size is enough).
"""

from __future__ import annotations

import math

from pydantic import BaseModel
from scipy.optimize import brentq
from scipy.stats import norm

ALPHA = 0.05
POWER = 0.8
_XTOL = 1e-12


class DetectableLift(BaseModel):
    """The minimum detectable lift over ``baseline_rate``: ``absolute`` (rate points) and
    ``relative`` (fraction of the baseline); infinite when a group is empty."""

    baseline_rate: float
    treatment: int
    control: int
    absolute: float
    relative: float


def power_of(effect_size: float, treatment: float, control: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided test for Cohen's ``effect_size`` with these group sizes."""
    if treatment <= 0 or control <= 0:
        return 0.0
    n = 1.0 / (1.0 / treatment + 1.0 / control)
    crit = norm.isf(alpha / 2)
    shift = effect_size * math.sqrt(n)
    return float(norm.sf(crit - shift) + norm.cdf(-crit - shift))


def effect_size(baseline_rate: float, treated_rate: float) -> float:
    """Cohen's h between a treated and a baseline rate."""
    return 2 * math.asin(math.sqrt(treated_rate)) - 2 * math.asin(math.sqrt(baseline_rate))


def _check(baseline_rate: float, alpha: float, power: float) -> None:
    if not 0 < baseline_rate < 1:
        raise ValueError(f"baseline rate must be in (0, 1), got {baseline_rate}")
    if not 0 < alpha < 1 or not alpha / 2 < power < 1:
        raise ValueError("need 0 < alpha < 1 and alpha/2 < power < 1")


def minimum_detectable_lift(
    treatment: int, control: int, baseline_rate: float, *, alpha: float = ALPHA, power: float = POWER
) -> DetectableLift:
    """The smallest rise over ``baseline_rate`` detected with ``power`` at level ``alpha``.

    Capped at a treated rate of 1: when even that is not detectable, the lift is infinite."""
    _check(baseline_rate, alpha, power)
    ceiling = effect_size(baseline_rate, 1.0)
    if treatment <= 0 or control <= 0 or power_of(ceiling, treatment, control, alpha) < power:
        return DetectableLift(
            baseline_rate=baseline_rate,
            treatment=treatment,
            control=control,
            absolute=math.inf,
            relative=math.inf,
        )
    h = brentq(lambda e: power_of(e, treatment, control, alpha) - power, 0.0, ceiling, xtol=_XTOL)
    treated = math.sin(math.asin(math.sqrt(baseline_rate)) + h / 2) ** 2
    absolute = treated - baseline_rate
    return DetectableLift(
        baseline_rate=baseline_rate,
        treatment=treatment,
        control=control,
        absolute=absolute,
        relative=absolute / baseline_rate,
    )


def control_size_for_lift(
    treatment: int,
    baseline_rate: float,
    lift: float,
    *,
    relative: bool = True,
    alpha: float = ALPHA,
    power: float = POWER,
) -> int | None:
    """The smallest control group that detects ``lift`` (relative to the baseline unless
    ``relative`` is False) next to ``treatment`` treated members; None when none is enough."""
    _check(baseline_rate, alpha, power)
    treated = baseline_rate * (1 + lift) if relative else baseline_rate + lift
    if not baseline_rate < treated <= 1:
        raise ValueError(f"the lift must raise the rate into ({baseline_rate}, 1], got {treated}")
    h = effect_size(baseline_rate, treated)
    if treatment <= 0 or power_of(h, treatment, 1e15, alpha) <= power:
        return None
    high = 1.0
    while power_of(h, treatment, high, alpha) < power:
        high *= 2
    size = brentq(
        lambda c: power_of(h, treatment, c, alpha) - power, high / 2 if high > 1 else 1e-9, high, xtol=1e-9
    )
    return max(1, math.ceil(size - 1e-9))
