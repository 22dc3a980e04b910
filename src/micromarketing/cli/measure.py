"""`micromarketing measure` and `micromarketing allocate`: a campaign's results and the next budget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.workspace import Workspace

CampaignArg = Annotated[str, typer.Argument(help="Campaign name.")]
AsOfOpt = Annotated[
    datetime | None,
    typer.Option(
        "--as-of", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="Count outcomes up to this time (UTC)."
    ),
]


@command(view=views.measurement)
def measure(ws: Workspace, campaign: CampaignArg, as_of: AsOfOpt = None):
    """Per segment and variant: funnel, conversions, revenue, ROI, retention, SRM check and lift."""
    return ws.measure.campaign(campaign, as_of=_utc(as_of))


@command(view=views.allocation)
def allocate(
    ws: Workspace,
    campaign: CampaignArg,
    budget: Annotated[float, typer.Option("--budget", help="Budget of the next round (currency).")],
    min_share: Annotated[
        float | None,
        typer.Option("--min-share", help="Least share of any arm (default [measure] min_share)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the posterior draws.")] = 0,
    as_of: AsOfOpt = None,
):
    """Recommend the next round's spend per segment and variant (Thompson sampling on ROI)."""
    return ws.measure.allocate(campaign, budget, min_share=min_share, seed=seed, as_of=_utc(as_of))


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
