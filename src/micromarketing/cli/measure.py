"""`micromarketing measure` and `micromarketing allocate`: a campaign's results and the next budget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    handle_errors,
    open_workspace,
    print_json,
)
from micromarketing.measure.results import Allocation, CampaignMeasurement, Interval, Lift

CampaignArg = Annotated[str, typer.Argument(help="Campaign name.")]
AsOfOpt = Annotated[
    datetime | None,
    typer.Option(
        "--as-of", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="Count outcomes up to this time (UTC)."
    ),
]


@handle_errors
def measure(
    campaign: CampaignArg,
    as_of: AsOfOpt = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Per segment and variant: funnel, conversions, revenue, ROI, retention, SRM check and lift."""
    with open_workspace(workspace) as ws:
        result = ws.measure.campaign(campaign, as_of=_utc(as_of))
    if json_output:
        print_json(result)
        return
    _print_measurement(result)


@handle_errors
def allocate(
    campaign: CampaignArg,
    budget: Annotated[float, typer.Option("--budget", help="Budget of the next round (currency).")],
    min_share: Annotated[
        float | None,
        typer.Option("--min-share", help="Least share of any arm (default [measure] min_share)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the posterior draws.")] = 0,
    as_of: AsOfOpt = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Recommend the next round's spend per segment and variant (Thompson sampling on ROI)."""
    with open_workspace(workspace) as ws:
        result = ws.measure.allocate(campaign, budget, min_share=min_share, seed=seed, as_of=_utc(as_of))
    if json_output:
        print_json(result)
        return
    _print_allocation(result)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _num(value: float | None, fmt: str = ",.2f") -> str:
    return "–" if value is None else format(value, fmt)


def _interval(interval: Interval | None, fmt: str) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "–"
    return f"[{format(interval.low, fmt)}, {format(interval.high, fmt)}]"


def _print_measurement(result: CampaignMeasurement) -> None:
    console.print(
        f"Campaign [bold]{result.campaign}[/] ({result.status}, objective {result.objective}); "
        f"{result.attribution.replace('_', ' ')} attribution, {result.attribution_days}-day window; "
        f"margin {result.margin:.0%}; currency {result.currency}"
    )
    arms = Table(title="Funnel and outcomes")
    for column in (
        "segment",
        "arm",
        "assigned",
        "delivered",
        "opens",
        "clicks",
        "conversions",
        "conv. rate",
        "revenue/recipient",
        "cost",
        "incr. revenue",
        "ROI",
        f"{result.retention_days}-day retention",
    ):
        arms.add_column(column, justify="left" if column in ("segment", "arm") else "right")
    for a in result.arms:
        arms.add_row(
            a.segment,
            a.arm,
            f"{a.assigned:,}",
            f"{a.delivered:,}",
            f"{a.opens:,}",
            f"{a.clicks:,}",
            f"{a.conversions:,}",
            _num(a.conversion_rate, ".2%"),
            _num(a.revenue_per_recipient),
            _num(a.cost),
            _num(a.incremental_revenue),
            _num(a.roi, "+.2f"),
            _num(a.retention, ".1%"),
        )
    console.print(arms)
    comparisons = result.comparisons + ([result.holdout] if result.holdout else [])
    srm = Table(title="Sample ratio check (chi-square against the planned split; flagged below p = 0.001)")
    for column in ("segment", "comparison", "observed", "expected", "p-value", "flag"):
        srm.add_column(column)
    for c in comparisons:
        srm.add_row(
            c.segment,
            f"{c.treatment} vs {c.control}",
            " / ".join(f"{k} {v:,}" for k, v in c.srm.observed.items()),
            " / ".join(f"{k} {v:,.1f}" for k, v in c.srm.expected.items()),
            f"{c.srm.p_value:.3g}",
            "[bold red]MISMATCH[/]" if c.srm.flagged else (c.srm.note or "ok"),
        )
    console.print(srm)
    lifts = Table(title=f"Lift over control (95% intervals; adjusted: {result.adjustment.upper()})")
    for column in (
        "segment",
        "comparison",
        "metric",
        "treatment",
        "control",
        "absolute [95%]",
        "relative [95%]",
        "relative, adjusted",
        "relative, shrunk",
        "p",
        "p adjusted",
    ):
        lifts.add_column(column)
    for c in comparisons:
        for lift in (c.conversion, c.revenue):
            lifts.add_row(c.segment, f"{c.treatment} vs {c.control}", *_lift_cells(lift))
    console.print(lifts)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _lift_cells(lift: Lift) -> list[str]:
    fmt = ".2%" if lift.metric == "conversion_rate" else ",.2f"
    name = "conversion" if lift.metric == "conversion_rate" else "revenue/recipient"
    return [
        name,
        _num(lift.treatment, fmt),
        _num(lift.control, fmt),
        f"{_num(lift.absolute, '+' + fmt)} {_interval(lift.absolute_interval, fmt)}",
        f"{_num(lift.relative, '+.1%')} {_interval(lift.relative_interval, '.1%')}",
        _interval(lift.relative_interval_adjusted, ".1%"),
        _num(lift.relative_shrunk, "+.1%"),
        _num(lift.p_value, ".3g"),
        _num(lift.p_value_adjusted, ".3g"),
    ]


def _print_allocation(result: Allocation) -> None:
    table = Table(
        title=f"Next round of {result.campaign}: budget {result.budget:,.2f} "
        f"(Thompson sampling, {result.draws} draws, floor {result.min_share:.0%} per arm)"
    )
    for column in ("segment", "variant", "now", "next", "budget", "messages", "ROI [95%]", "P(best)"):
        table.add_column(column, justify="left" if column in ("segment", "variant") else "right")
    for arm in result.arms:
        table.add_row(
            arm.segment,
            arm.variant,
            f"{arm.current_share:.0%}",
            f"{arm.share:.0%}",
            f"{arm.budget:,.2f}",
            f"{arm.messages:,}",
            f"{_num(arm.roi_mean, '+.2f')} {_interval(arm.roi_interval, '+.2f')}",
            f"{arm.probability_best:.0%}",
        )
    console.print(table)
    for arm in result.arms:
        console.print(f"• {arm.explanation}", soft_wrap=True)
