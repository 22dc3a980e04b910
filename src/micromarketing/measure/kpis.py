"""Per campaign, segment and variant: the funnel, the outcomes and the lift over control.

The members frame from :mod:`micromarketing.measure.attribution` goes into the warehouse as an
in-memory table; one SQL pass joins it to ``transactions`` (orders in the attribution window,
spend in the pre-period for CUPED, any order in the retention window) and to ``events`` (opens
and clicks in the window), and aggregates the sufficient statistics per segment and arm.  Python
then runs the tests of :mod:`micromarketing.measure.stats` on those sums: the SRM check first,
then conversion (two proportions) and revenue per recipient (Welch, CUPED when pre-period spend
varies), adjusted across the campaign's segment × variant comparisons, and shrunk toward the
campaign's overall lift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import pandas as pd
from scipy.stats import norm

from micromarketing.measure import stats
from micromarketing.measure.attribution import (
    CONTROL,
    HOLDOUT,
    NOT_TREATED,
    CampaignMembers,
    campaign_members,
    utc_now,
)
from micromarketing.measure.results import (
    ArmKpis,
    CampaignMeasurement,
    Comparison,
    Interval,
    Lift,
)
from micromarketing.measure.srm import check_srm
from micromarketing.store.context import StoreContext

ALL = "all"
CONTACTED = "contacted"
OPEN_EVENTS = ("email_open", "push_open", "app_open")
CLICK_EVENTS = ("email_click", "sms_click")
SUMS = (
    "assigned",
    "delivered",
    "opens",
    "clicks",
    "conversions",
    "orders",
    "revenue",
    "revenue_sq",
    "pre",
    "pre_sq",
    "pre_revenue",
    "retained",
    "message_cost",
    "offer_cost",
)
NORMAL_975 = float(norm.isf(stats.ALPHA / 2))
COUNTS = {"assigned", "delivered", "opens", "clicks", "conversions", "orders", "retained"}


@dataclass(frozen=True)
class ArmSums:
    """The sufficient statistics of one arm, additive over segments."""

    assigned: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    conversions: int = 0
    orders: int = 0
    revenue: float = 0.0
    revenue_sq: float = 0.0
    pre: float = 0.0
    pre_sq: float = 0.0
    pre_revenue: float = 0.0
    retained: int = 0
    message_cost: float = 0.0
    offer_cost: float = 0.0

    def __add__(self, other: ArmSums) -> ArmSums:
        return ArmSums(*(getattr(self, f) + getattr(other, f) for f in SUMS))

    @property
    def cost(self) -> float:
        return self.message_cost + self.offer_cost

    @property
    def revenue_moments(self) -> stats.Moments:
        return stats.Moments(self.assigned, self.revenue, self.revenue_sq)

    @property
    def covariate_moments(self) -> stats.CovariateMoments:
        return stats.CovariateMoments(
            self.revenue_moments, stats.Moments(self.assigned, self.pre, self.pre_sq), self.pre_revenue
        )


def measure_campaign(ctx: StoreContext, name: str, as_of: datetime | None = None) -> CampaignMeasurement:
    """Attribute, aggregate and test campaign ``name`` (outcomes up to ``as_of``, default now)."""
    cfg = ctx.settings.measure
    as_of = as_of or utc_now()
    if as_of.tzinfo is None:  # a naive time is UTC, like every stored timestamp
        as_of = as_of.replace(tzinfo=UTC)
    members = campaign_members(
        ctx,
        name,
        attribution=cfg.attribution,
        retention_days=cfg.retention_days,
        pre_period_days=cfg.pre_period_days,
        message_cost=ctx.settings.campaigns.message_costs(ctx.settings.channels.sms.cost_per_segment),
    )
    sums = arm_sums(ctx, members, as_of)
    return _measurement(ctx, members, sums, as_of)


def arm_sums(ctx: StoreContext, members: CampaignMembers, as_of: datetime) -> dict[tuple[str, str], ArmSums]:
    """(segment, arm) → the arm's sums, computed in one SQL pass over the warehouse."""
    frame = members.members.drop(columns=["channel"])
    table = ibis.memtable(frame)
    per_member = _member_outcomes(ctx, table, as_of, (members.campaign.name, str(members.campaign.id)))
    grouped = per_member.group_by(["segment", "arm"]).aggregate(
        assigned=per_member.count(),
        delivered=per_member.delivered.sum(),
        opens=(per_member.opened > 0).cast("int64").sum(),
        clicks=(per_member.clicked > 0).cast("int64").sum(),
        conversions=(per_member.orders > 0).cast("int64").sum(),
        orders=per_member.orders.sum(),
        revenue=per_member.revenue.sum(),
        revenue_sq=(per_member.revenue * per_member.revenue).sum(),
        pre=per_member.pre.sum(),
        pre_sq=(per_member.pre * per_member.pre).sum(),
        pre_revenue=(per_member.pre * per_member.revenue).sum(),
        retained=(per_member.retained > 0).cast("int64").sum(),
        message_cost=per_member.message_cost.sum(),
        offer_cost=((per_member.orders > 0).cast("float64") * per_member.offer_cost).sum(),
    )
    out: dict[tuple[str, str], ArmSums] = {}
    for row in ctx.warehouse.con.execute(grouped).to_dict("records"):
        values = {f: (0 if pd.isna(row[f]) else row[f]) for f in SUMS}
        typed = {f: int(v) if f in COUNTS else float(v) for f, v in values.items()}
        out[(str(row["segment"]), str(row["arm"]))] = ArmSums(**typed)
    return out


def _member_outcomes(
    ctx: StoreContext, members: ir.Table, as_of: datetime, campaign_ids: tuple[str, str]
) -> ir.Table:
    """One row per member: orders and revenue in its window, pre-period spend, retention, engagement."""
    cutoff = ibis.literal(pd.Timestamp(as_of).tz_convert("UTC"))
    tx = ctx.table("transactions")
    tx = tx.filter(tx.ordered_at <= cutoff).select(
        tx_customer=tx.customer_id,
        ordered_at=tx.ordered_at,
        amount=tx.amount,
        order_start=tx.order_head.cast("int64"),
    )
    m = members
    horizon = ibis.greatest(m.attribution_end, m.retention_end)
    joined = m.join(
        tx,
        [m.customer_id == tx.tx_customer, tx.ordered_at >= m.pre_start, tx.ordered_at <= horizon],
        how="left",
    )
    in_window = (joined.ordered_at > joined.touch_at) & (joined.ordered_at <= joined.attribution_end)
    in_retention = (joined.ordered_at > joined.touch_at) & (joined.ordered_at <= joined.retention_end)
    before = joined.ordered_at < joined.touch_at
    outcomes = joined.group_by("customer_id").aggregate(
        orders=in_window.ifelse(joined.order_start, 0).sum().coalesce(0),
        revenue=in_window.ifelse(joined.amount, 0.0).sum().coalesce(0.0),
        pre=before.ifelse(joined.amount, 0.0).sum().coalesce(0.0),
        retained=in_retention.cast("int64").sum().coalesce(0),
    )
    engagement = _engagement(ctx, m, cutoff, campaign_ids)
    result = m.join(outcomes, "customer_id", how="left").join(engagement, "customer_id", how="left")
    return result.select(
        "segment",
        "arm",
        "delivered",
        "message_cost",
        "offer_cost",
        orders=result.orders.coalesce(0),
        revenue=result.revenue.coalesce(0.0),
        pre=result.pre.coalesce(0.0),
        retained=result.retained.coalesce(0),
        opened=result.opened.coalesce(0),
        clicked=result.clicked.coalesce(0),
    )


def _engagement(
    ctx: StoreContext, members: ir.Table, cutoff: ir.Value, campaign_ids: tuple[str, str]
) -> ir.Table:
    """Per member, open and click events inside the attribution window (a campaign-tagged event
    must name this campaign; an untagged one counts for whoever was touched)."""
    ev = ctx.table("events")
    ev = ev.filter(
        ev.event_type.isin(OPEN_EVENTS + CLICK_EVENTS),
        ev.occurred_at <= cutoff,
        ev.campaign_id.isnull() | ev.campaign_id.isin(campaign_ids),
    ).select(
        ev_customer=ev.customer_id,
        occurred_at=ev.occurred_at,
        event_type=ev.event_type,
    )
    m = members
    joined = m.join(
        ev,
        [m.customer_id == ev.ev_customer, ev.occurred_at > m.touch_at, ev.occurred_at <= m.attribution_end],
    )
    return joined.group_by("customer_id").aggregate(
        opened=joined.event_type.isin(OPEN_EVENTS).cast("int64").sum(),
        clicked=joined.event_type.isin(CLICK_EVENTS).cast("int64").sum(),
    )


# -- from sums to the measurement -----------------------------------------------------------
def _measurement(
    ctx: StoreContext, members: CampaignMembers, sums: dict[tuple[str, str], ArmSums], as_of: datetime
) -> CampaignMeasurement:
    cfg = ctx.settings.measure
    margin = ctx.settings.clv.margin
    campaign = members.campaign
    segments = sorted({segment for segment, _ in sums})
    variants = sorted({arm for _, arm in sums if arm not in NOT_TREATED})
    totals: dict[str, ArmSums] = {}
    for (_, arm), s in sums.items():
        totals[arm] = totals.get(arm, ArmSums()) + s

    warnings: list[str] = []
    comparisons: list[Comparison] = []
    for segment in segments:
        for variant in variants:
            treated, control = sums.get((segment, variant)), sums.get((segment, CONTROL))
            if treated is None:
                continue
            if control is None or control.assigned < 2:
                warnings.append(f"segment {segment!r}: no control group to compare variant {variant!r} with")
                continue
            planned = members.planned_shares.get(segment, {})
            comparisons.append(
                _compare(
                    segment,
                    variant,
                    CONTROL,
                    treated,
                    control,
                    {CONTROL: planned.get(CONTROL, 0.0), variant: planned.get(variant, 0.0)},
                )
            )
    segment_level = list(comparisons)
    _adjust(segment_level, sums, cfg.adjustment)
    overall: list[Comparison] = []
    if CONTROL in totals and totals[CONTROL].assigned >= 2:
        for variant in variants:
            if variant not in totals:
                continue
            planned = _pooled_shares(members.planned_shares, sums, (CONTROL, variant))
            overall.append(_compare(ALL, variant, CONTROL, totals[variant], totals[CONTROL], planned))
        _adjust(overall, {(ALL, a): s for a, s in totals.items()}, "none")
        _shrink(segment_level, overall)
    holdout = _holdout(ctx, sums, totals, variants)

    arms = [
        _arm_kpis(segment, arm, s, sums.get((segment, CONTROL)), margin)
        for (segment, arm), s in sorted(sums.items())
    ] + [_arm_kpis(ALL, arm, s, totals.get(CONTROL), margin) for arm, s in sorted(totals.items())]

    mismatches = [
        f"sample-ratio mismatch in segment {c.segment!r}, {c.treatment} vs {c.control} "
        f"(p = {c.srm.p_value:.2g}): the split is not the planned one; do not trust its lift"
        for c in segment_level + overall + ([holdout] if holdout else [])
        if c.srm.flagged
    ]
    warnings = mismatches + warnings
    open_windows = int((members.members["attribution_end"] > pd.Timestamp(as_of)).sum())
    if campaign.status != "finished" or open_windows:
        lookup = {**sums, **{(ALL, arm): s for arm, s in totals.items()}}
        for c in segment_level + overall:
            _monitor(c, lookup[(c.segment, c.treatment)], lookup[(c.segment, c.control)])
    if open_windows:
        warnings.append(f"{open_windows} members' attribution windows are still open: figures will change")
    return CampaignMeasurement(
        campaign=campaign.name,
        objective=campaign.objective,
        status=campaign.status,
        attribution=cfg.attribution,
        attribution_days=campaign.attribution_days,
        retention_days=cfg.retention_days,
        currency=ctx.settings.ingest.currency or ctx.settings.currency,
        margin=margin,
        adjustment=cfg.adjustment,
        measured_at=as_of,
        arms=arms,
        comparisons=segment_level + overall,
        holdout=holdout,
        warnings=warnings,
    )


def _compare(
    segment: str,
    treatment: str,
    control_name: str,
    treated: ArmSums,
    control: ArmSums,
    planned: dict[str, float],
) -> Comparison:
    srm = check_srm({control_name: control.assigned, treatment: treated.assigned}, planned)
    return Comparison(
        segment=segment,
        treatment=treatment,
        control=control_name,
        srm=srm,
        conversion=_conversion_lift(treated, control),
        revenue=_revenue_lift(treated, control),
    )


def _monitor(comparison: Comparison, treated: ArmSums, control: ArmSums) -> None:
    """Always-valid intervals and p-values of the absolute lifts, for looks while the campaign runs."""
    n = treated.assigned + control.assigned
    conversion = stats.two_proportion_test(
        treated.conversions, treated.assigned, control.conversions, control.assigned
    ).absolute
    revenue = _revenue_test(treated, control)[0].absolute
    for lift, effect in ((comparison.conversion, conversion), (comparison.revenue, revenue)):
        lift.absolute_interval_always_valid = _interval(stats.confidence_sequence(effect, n))
        lift.p_value_always_valid = stats.sequential_p_value(effect, n)


def _conversion_lift(treated: ArmSums, control: ArmSums, alpha: float = stats.ALPHA) -> Lift:
    result = stats.two_proportion_test(
        treated.conversions, treated.assigned, control.conversions, control.assigned, alpha
    )
    return Lift(
        metric="conversion_rate",
        treatment=result.rate_treatment,
        control=result.rate_control,
        absolute=result.absolute.estimate,
        absolute_interval=_interval(result.absolute.interval),
        relative=result.relative.estimate,
        relative_interval=_interval(result.relative.interval),
        p_value=result.absolute.p_value,
        method="two-proportion z-test, Newcombe interval",
    )


def _revenue_test(
    treated: ArmSums, control: ArmSums, alpha: float = stats.ALPHA
) -> tuple[stats.MeanComparison, str]:
    """CUPED on pre-period spend when it varies in both arms, else the plain Welch test."""
    t, c = treated.covariate_moments, control.covariate_moments
    if t.pre.variance > 0 and c.pre.variance > 0:
        return stats.cuped_test(t, c, alpha), "Welch t-test, CUPED on pre-period spend"
    return stats.welch_test(t.post, c.post, alpha), "Welch t-test"


def _revenue_lift(treated: ArmSums, control: ArmSums, alpha: float = stats.ALPHA) -> Lift:
    result, method = _revenue_test(treated, control, alpha)
    return Lift(
        metric="revenue_per_recipient",
        treatment=result.mean_treatment,
        control=result.mean_control,
        absolute=result.absolute.estimate,
        absolute_interval=_interval(result.absolute.interval),
        relative=result.relative.estimate,
        relative_interval=_interval(result.relative.interval),
        p_value=result.absolute.p_value,
        method=method,
        cuped_variance_reduction=result.variance_reduction if "CUPED" in method else None,
    )


def _adjust(
    comparisons: list[Comparison], sums: dict[tuple[str, str], ArmSums], method: stats.Adjustment
) -> None:
    """Adjusted p-values and intervals over one family of comparisons, per metric."""
    if not comparisons:
        return
    for metric in ("conversion", "revenue"):
        lifts = [getattr(c, metric) for c in comparisons]
        raw = [lift.p_value if lift.p_value is not None else 1.0 for lift in lifts]
        adjusted = stats.adjust_p_values(raw, method)
        alpha = stats.adjusted_alpha(raw, method)
        for comparison, lift, p in zip(comparisons, lifts, adjusted, strict=True):
            treated = sums[(comparison.segment, comparison.treatment)]
            control = sums[(comparison.segment, comparison.control)]
            again = (
                _conversion_lift(treated, control, alpha)
                if metric == "conversion"
                else _revenue_lift(treated, control, alpha)
            )
            lift.p_value_adjusted = float(p)
            lift.absolute_interval_adjusted = again.absolute_interval
            lift.relative_interval_adjusted = again.relative_interval


def _shrink(segment_level: list[Comparison], overall: list[Comparison]) -> None:
    """Each segment's relative lift pulled toward the campaign's lift for the same variant."""
    z = NORMAL_975
    for campaign_level in overall:
        family = [c for c in segment_level if c.treatment == campaign_level.treatment]
        for metric in ("conversion", "revenue"):
            lifts = [getattr(c, metric) for c in family]
            target = getattr(campaign_level, metric).relative
            if not lifts or target is None:
                continue
            estimates = [lift.relative if lift.relative is not None else math.nan for lift in lifts]
            errors = [_relative_se(lift) for lift in lifts]
            for lift, shrunk in zip(lifts, stats.shrink_toward(estimates, errors, target), strict=True):
                lift.relative_shrunk = shrunk.estimate
                if math.isfinite(shrunk.std_error):
                    lift.relative_shrunk_interval = Interval(
                        low=shrunk.estimate - z * shrunk.std_error,
                        high=shrunk.estimate + z * shrunk.std_error,
                    )
            campaign_lift = getattr(campaign_level, metric)
            campaign_lift.relative_shrunk = target
            campaign_lift.relative_shrunk_interval = campaign_lift.relative_interval


def _relative_se(lift: Lift) -> float:
    """The standard error behind a relative interval (its half-width over the normal quantile)."""
    low, high = lift.relative_interval.low, lift.relative_interval.high
    if low is None or high is None:
        return math.nan
    return (high - low) / (2 * NORMAL_975)


def _pooled_shares(
    planned: dict[str, dict[str, float]], sums: dict[tuple[str, str], ArmSums], arms: tuple[str, ...]
) -> dict[str, float]:
    """The campaign-wide planned share of ``arms``: each segment's plan weighted by its size."""
    out = dict.fromkeys(arms, 0.0)
    for segment, shares in planned.items():
        size = sum(s.assigned for (seg, arm), s in sums.items() if seg == segment and arm != HOLDOUT)
        for arm in arms:
            out[arm] += size * shares.get(arm, 0.0)
    return out


def _holdout(
    ctx: StoreContext, sums: dict[tuple[str, str], ArmSums], totals: dict[str, ArmSums], variants: list[str]
) -> Comparison | None:
    """The global holdout against everyone the campaign set out to contact (all variants)."""
    held = totals.get(HOLDOUT)
    if held is None or held.assigned < 2:
        return None
    contacted = sum((totals[v] for v in variants if v in totals), ArmSums())
    if contacted.assigned < 2:
        return None
    share = float(getattr(getattr(ctx.settings, "campaigns", None), "global_holdout_share", 0.0) or 0.0)
    treated_share = 1 - share if share else 0.0  # unknown plan: no SRM test
    comparison = _compare(
        ALL, CONTACTED, HOLDOUT, contacted, held, {HOLDOUT: share, CONTACTED: treated_share}
    )
    sums_all = {(ALL, CONTACTED): contacted, (ALL, HOLDOUT): held}
    _adjust([comparison], sums_all, "none")
    return comparison


def _arm_kpis(segment: str, arm: str, s: ArmSums, control: ArmSums | None, margin: float) -> ArmKpis:
    rate = s.conversions / s.assigned if s.assigned else None
    rpr = s.revenue / s.assigned if s.assigned else None
    incremental_conversions = incremental_revenue = roi = None
    if arm not in NOT_TREATED and control is not None and control.assigned and s.assigned:
        incremental_conversions = s.conversions - s.assigned * control.conversions / control.assigned
        incremental_revenue = s.assigned * (s.revenue / s.assigned - control.revenue / control.assigned)
        if s.cost > 0:
            roi = (incremental_revenue * margin - s.cost) / s.cost
    return ArmKpis(
        segment=segment,
        arm=arm,
        assigned=s.assigned,
        delivered=s.delivered,
        opens=s.opens,
        clicks=s.clicks,
        engaged=s.clicks if s.clicks else s.opens,
        conversions=s.conversions,
        conversion_rate=rate,
        revenue=s.revenue,
        revenue_per_recipient=rpr,
        cost=s.cost,
        incremental_conversions=incremental_conversions,
        incremental_revenue=incremental_revenue,
        roi=roi,
        retained=s.retained,
        retention=s.retained / s.assigned if s.assigned else None,
    )


def _interval(interval: stats.Interval) -> Interval:
    return Interval(low=interval.low, high=interval.high)
