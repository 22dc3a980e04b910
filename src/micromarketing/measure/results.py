"""The result models of measurement: what ``measure``/``allocate`` print, ``--json`` writes, the
REST API returns and the HTML report draws.

One shape for all of them (Pydantic), built by :mod:`micromarketing.measure.kpis` and
:mod:`micromarketing.measure.allocate`.  Missing numbers (a rate of an empty arm, a ROI without
cost) are ``None``, never NaN, so the JSON is strict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from micromarketing.results import Result as _Result


class Interval(_Result):
    """A two-sided interval; ``None`` ends when it cannot be computed."""

    low: float | None
    high: float | None


class Srm(_Result):
    """Sample-ratio-mismatch check of one comparison: arm counts against the planned shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float
    flagged: bool  # p < 0.001: the assignment is broken and the lifts below it are not to be trusted
    threshold: float = 0.001
    note: str = ""  # why nothing was tested (no planned share), else empty


class Lift(_Result):
    """Treatment minus control on one metric, with 95% intervals raw and adjusted for many tests.

    ``relative_shrunk`` is the empirical-Bayes estimate that pulls a segment's relative lift toward
    the campaign's overall lift (its noisy raw value stays in ``relative``)."""

    metric: Literal["conversion_rate", "revenue_per_recipient"]
    treatment: float | None
    control: float | None
    absolute: float | None
    absolute_interval: Interval
    relative: float | None
    relative_interval: Interval
    p_value: float | None
    p_value_adjusted: float | None = None
    absolute_interval_adjusted: Interval | None = None
    relative_interval_adjusted: Interval | None = None
    relative_shrunk: float | None = None
    relative_shrunk_interval: Interval | None = None
    method: str  # the test used, e.g. "two-proportion z, Newcombe" or "Welch t, CUPED"
    cuped_variance_reduction: float | None = None  # share of the variance CUPED removed
    # While a campaign runs: an asymptotic confidence sequence of the absolute lift, valid however
    # often it is looked at (wider than the fixed-horizon interval), and its always-valid p-value.
    absolute_interval_always_valid: Interval | None = None
    p_value_always_valid: float | None = None


class Comparison(_Result):
    """One arm against its control: the SRM check first, then the lifts."""

    segment: str  # a segment name, or "all" for the campaign as a whole
    treatment: str  # variant name (or "contacted" for the global-holdout comparison)
    control: str  # "control" (or "holdout")
    srm: Srm
    conversion: Lift
    revenue: Lift


class ArmKpis(_Result):
    """The funnel and outcomes of one arm (campaign × segment × variant or control)."""

    segment: str
    arm: str
    assigned: int
    delivered: int
    opens: int
    clicks: int
    engaged: int  # clicks when click events exist, else opens
    conversions: int
    conversion_rate: float | None
    revenue: float
    revenue_per_recipient: float | None
    cost: float
    incremental_conversions: float | None = None
    incremental_revenue: float | None = None
    roi: float | None = None  # (incremental gross margin − cost) / cost
    retained: int  # members with an order within ``retention_days`` (default 90) of their touch
    retention: float | None


class CampaignMeasurement(_Result):
    """Everything measured about one campaign, per campaign, segment and variant."""

    campaign: str
    objective: str
    status: str
    attribution: Literal["last_touch", "any_touch"]
    attribution_days: int
    retention_days: int
    currency: str
    margin: float
    adjustment: Literal["bh", "holm", "none"]
    measured_at: datetime
    arms: list[ArmKpis]
    comparisons: list[Comparison]  # per segment × variant, then "all" × variant
    holdout: Comparison | None = None  # the global holdout against everyone contacted
    warnings: list[str] = Field(default_factory=list)

    @property
    def srm_flagged(self) -> bool:
        return any(c.srm.flagged for c in self.comparisons)


class ArmAllocation(_Result):
    """The next round's spend on one segment × variant, and why it moved."""

    segment: str
    variant: str
    current_share: float
    share: float
    budget: float
    messages: int
    cost_per_message: float
    roi_mean: float | None
    roi_interval: Interval
    probability_best: float
    explanation: str


class Allocation(_Result):
    """Thompson-sampling reallocation of a budget across a campaign's segment × variant arms."""

    campaign: str
    budget: float
    min_share: float
    draws: int
    seed: int
    arms: list[ArmAllocation]
