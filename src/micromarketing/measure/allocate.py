"""Budget reallocation: the next round's spend per segment × variant by Thompson sampling.

Each arm's return on a unit of spend is uncertain, so it is drawn from its posterior: the
conversion rate of the arm and of its segment's control are Beta-Binomial (a weak Beta prior of
two pseudo-members centred on the segment's own rate, so a small control of a rare outcome does
not invent a negative lift), the
mean revenue of a conversion is inverse-Gamma (an exponential order value, one pseudo-order at the
campaign's mean), and the ROI of a recipient is (incremental conversion rate × revenue per
conversion × margin − cost) / cost.  Thompson sampling spends on each arm in proportion to the
probability that it has the highest ROI, above a floor ``min_share`` per arm so that no arm is
starved of the evidence that could rescue it.  Each arm gets a sentence saying why it moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from micromarketing.errors import DataError, InvalidInputError
from micromarketing.measure.attribution import NOT_TREATED
from micromarketing.measure.results import Allocation, ArmAllocation, ArmKpis, CampaignMeasurement, Interval
from micromarketing.store.context import StoreContext

PRIOR_STRENGTH = 2.0  # pseudo-members of the Beta prior, centred on the segment's conversion rate


@dataclass(frozen=True)
class ArmEvidence:
    """What one segment × variant arm has shown so far, and its segment's control."""

    segment: str
    variant: str
    recipients: int
    conversions: int
    revenue: float
    cost: float
    control_recipients: int
    control_conversions: int

    @property
    def cost_per_recipient(self) -> float:
        return self.cost / self.recipients if self.recipients else 0.0


def roi_draws(arms: Sequence[ArmEvidence], margin: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior draws of each arm's ROI, shape (draws, arms)."""
    conversions = sum(a.conversions for a in arms)
    prior_revenue = sum(a.revenue for a in arms) / conversions if conversions else 1.0
    costs = [a.cost_per_recipient for a in arms]
    known = [c for c in costs if c > 0]
    if not known:
        raise DataError(
            "no arm has a cost: set the cost of a message in [campaigns] (email_cost, …) or "
            "[channels.sms] cost_per_segment"
        )
    fallback = float(np.mean(known))
    prior = _segment_rates(arms)
    out = np.empty((draws, len(arms)))
    for k, arm in enumerate(arms):
        a0, b0 = PRIOR_STRENGTH * prior[arm.segment], PRIOR_STRENGTH * (1 - prior[arm.segment])
        rate = rng.beta(a0 + arm.conversions, b0 + arm.recipients - arm.conversions, draws)
        base = rng.beta(
            a0 + arm.control_conversions, b0 + arm.control_recipients - arm.control_conversions, draws
        )
        per_conversion = (arm.revenue + prior_revenue) / rng.gamma(arm.conversions + 1, 1.0, draws)
        cost = costs[k] or fallback
        out[:, k] = ((rate - base) * per_conversion * margin - cost) / cost
    return out


def _segment_rates(arms: Sequence[ArmEvidence]) -> dict[str, float]:
    """Each segment's conversion rate over all its arms and its control (the prior's centre)."""
    counts: dict[str, list[float]] = {}
    controls: dict[str, tuple[int, int]] = {}
    for arm in arms:
        total = counts.setdefault(arm.segment, [0.0, 0.0])
        total[0] += arm.conversions
        total[1] += arm.recipients
        controls[arm.segment] = (arm.control_conversions, arm.control_recipients)
    return {
        segment: (conversions + controls[segment][0] + 1) / (recipients + controls[segment][1] + 2)
        for segment, (conversions, recipients) in counts.items()
    }


def thompson_shares(draws: np.ndarray, min_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(shares, probability best): spend ∝ P(arm has the highest ROI), at least ``min_share`` each."""
    n_arms = draws.shape[1]
    floor = min(min_share, 1 / n_arms)
    best = np.bincount(np.argmax(draws, axis=1), minlength=n_arms) / draws.shape[0]
    return floor + (1 - n_arms * floor) * best, best


def evidence(measurement: CampaignMeasurement) -> list[ArmEvidence]:
    """The segment × variant arms of a measurement with their segment's control."""
    by_key = {(a.segment, a.arm): a for a in measurement.arms if a.segment != "all"}
    arms = []
    for (segment, arm), kpis in sorted(by_key.items()):
        if arm in NOT_TREATED:
            continue
        control = by_key.get((segment, "control"))
        arms.append(_evidence(kpis, control))
    return arms


def _evidence(kpis: ArmKpis, control: ArmKpis | None) -> ArmEvidence:
    return ArmEvidence(
        segment=kpis.segment,
        variant=kpis.arm,
        recipients=kpis.assigned,
        conversions=kpis.conversions,
        revenue=kpis.revenue,
        cost=kpis.cost,
        control_recipients=control.assigned if control else 0,
        control_conversions=control.conversions if control else 0,
    )


def allocate_for_workspace(
    ctx: StoreContext,
    measurement: CampaignMeasurement,
    budget: float,
    *,
    min_share: float | None = None,
    seed: int = 0,
) -> Allocation:
    """:func:`allocate_budget` with the workspace's margin and ``[measure]`` settings."""
    cfg = ctx.settings.measure
    return allocate_budget(
        measurement,
        budget,
        margin=ctx.settings.clv.margin,
        min_share=cfg.min_share if min_share is None else min_share,
        draws=cfg.draws,
        seed=seed,
    )


def allocate_budget(
    measurement: CampaignMeasurement,
    budget: float,
    *,
    margin: float,
    min_share: float = 0.05,
    draws: int = 4000,
    seed: int = 0,
) -> Allocation:
    """Recommend the next round's spend of ``budget`` across the campaign's segment × variant arms."""
    if not budget > 0:
        raise InvalidInputError(f"--budget must be positive, got {budget:g}")
    if not 0 <= min_share < 1:
        raise InvalidInputError(f"min_share must be in [0, 1), got {min_share:g}")
    arms = evidence(measurement)
    if not arms:
        raise DataError(f"campaign {measurement.campaign!r} has no variant arms to allocate between")
    rng = np.random.default_rng(seed)
    roi = roi_draws(arms, margin, draws, rng)
    shares, best = thompson_shares(roi, min_share)
    spent = sum(a.cost for a in arms)
    current = [a.cost / spent if spent else 1 / len(arms) for a in arms]
    floor = min(min_share, 1 / len(arms))
    out = []
    for k, arm in enumerate(arms):
        cost = arm.cost_per_recipient or float(np.mean([a.cost_per_recipient for a in arms if a.cost]))
        low, high = np.quantile(roi[:, k], [0.025, 0.975])
        mean = float(roi[:, k].mean())
        out.append(
            ArmAllocation(
                segment=arm.segment,
                variant=arm.variant,
                current_share=current[k],
                share=float(shares[k]),
                budget=float(budget * shares[k]),
                messages=int(budget * shares[k] / cost + 1e-9),
                cost_per_message=cost,
                roi_mean=mean,
                roi_interval=Interval(low=float(low), high=float(high)),
                probability_best=float(best[k]),
                explanation=_explain(
                    arm, current[k], float(shares[k]), float(best[k]), mean, (low, high), floor, draws
                ),
            )
        )
    return Allocation(
        campaign=measurement.campaign, budget=budget, min_share=floor, draws=draws, seed=seed, arms=out
    )


def _explain(
    arm: ArmEvidence,
    current: float,
    share: float,
    best: float,
    mean: float,
    interval: tuple[float, float],
    floor: float,
    draws: int,
) -> str:
    change = share - current
    move = "up" if change > 0.005 else "down" if change < -0.005 else "unchanged"
    why = (
        f"highest ROI in {best:.0%} of {draws} posterior draws"
        if best >= 0.005
        else f"never the best in {draws} posterior draws"
    )
    floor_note = f"; kept at the exploration floor of {floor:.0%}" if share <= floor + 1e-9 and floor else ""
    return (
        f"{arm.segment}/{arm.variant}: {current:.0%} → {share:.0%} of the budget ({move}): {why}; "
        f"ROI {mean:+.2f} (95% {interval[0]:+.2f} to {interval[1]:+.2f}) from {arm.conversions} conversions "
        f"of {arm.recipients} recipients against {arm.control_conversions} of {arm.control_recipients} "
        f"in control{floor_note}"
    )


# -- judging the policy against known truth -------------------------------------------------
Policy = Literal["thompson", "even", "greedy"]


@dataclass(frozen=True)
class TrueArm:
    """A simulated arm whose response is known: conversion rates, order value and cost."""

    segment: str
    variant: str
    rate: float
    control_rate: float
    revenue_per_conversion: float
    cost_per_recipient: float

    def profit_per_recipient(self, margin: float) -> float:
        return (
            self.rate - self.control_rate
        ) * self.revenue_per_conversion * margin - self.cost_per_recipient


def simulate(
    truth: Sequence[TrueArm],
    policy: Policy,
    *,
    rounds: int,
    budget: float,
    margin: float,
    min_share: float = 0.05,
    control_share: float = 0.1,
    draws: int = 1000,
    seed: int = 0,
) -> float:
    """The expected incremental profit that ``policy`` earns over ``rounds`` rounds of ``budget``.

    Round one is an even split for every policy (nothing is known yet); afterwards ``thompson``
    uses :func:`thompson_shares`, ``even`` keeps the even split, and ``greedy`` spends everything
    on the arm whose observed ROI is highest.  Outcomes are drawn (binomial conversions, exponential
    order values, a control of ``control_share`` per segment); the score is the true expected
    profit of the recipients bought, so luck in the outcomes does not count, only the decisions."""
    rng = np.random.default_rng(seed)
    n_arms = len(truth)
    seen = {k: [0, 0, 0.0] for k in range(n_arms)}  # recipients, conversions, revenue
    control: dict[str, list[int]] = {arm.segment: [0, 0] for arm in truth}
    earned = 0.0
    for round_no in range(rounds):
        evidence_now = [
            ArmEvidence(
                arm.segment,
                arm.variant,
                seen[k][0],
                seen[k][1],
                seen[k][2],
                seen[k][0] * arm.cost_per_recipient,
                *control[arm.segment],
            )
            for k, arm in enumerate(truth)
        ]
        if round_no == 0 or policy == "even":
            shares = np.full(n_arms, 1 / n_arms)
        elif policy == "thompson":
            shares, _ = thompson_shares(roi_draws(evidence_now, margin, draws, rng), min_share)
        else:
            observed = [_observed_roi(e, margin) for e in evidence_now]
            shares = np.zeros(n_arms)
            shares[int(np.argmax(observed))] = 1.0
        for k, arm in enumerate(truth):
            recipients = int(budget * shares[k] / arm.cost_per_recipient)
            conversions = int(rng.binomial(recipients, arm.rate))
            seen[k][0] += recipients
            seen[k][1] += conversions
            seen[k][2] += float(rng.gamma(conversions, arm.revenue_per_conversion)) if conversions else 0.0
            held = int(round(recipients * control_share / (1 - control_share)))
            control[arm.segment][0] += held
            control[arm.segment][1] += int(rng.binomial(held, arm.control_rate))
            earned += recipients * arm.profit_per_recipient(margin)
    return earned


def _observed_roi(arm: ArmEvidence, margin: float) -> float:
    if not arm.recipients or not arm.cost:
        return -np.inf
    base = arm.control_conversions / arm.control_recipients if arm.control_recipients else 0.0
    return (
        (arm.conversions / arm.recipients - base)
        * arm.recipients
        * (arm.revenue / max(arm.conversions, 1))
        * margin
        - arm.cost
    ) / arm.cost
