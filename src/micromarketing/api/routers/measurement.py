"""Measurement: a campaign's results per segment and variant (lift with intervals), the next
round's budget allocation, and the HTML report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from micromarketing.api.auth import Viewer
from micromarketing.api.deps import WS
from micromarketing.api.routers.campaigns import CAMPAIGN_NAME_PATTERN, CampaignName
from micromarketing.measure.results import Allocation, CampaignMeasurement

router = APIRouter(tags=["measurement"], dependencies=[Viewer])
AsOf = Annotated[
    datetime | None,
    Query(description="measure outcomes up to this instant (default: now; UTC when no zone is given)"),
]
BUDGET_MAX = 1e12


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("/campaigns/{name}/results", response_model=CampaignMeasurement,
            summary="Funnel, outcomes, SRM check and lift over control per segment and variant")
def results(ws: WS, name: CampaignName, as_of: AsOf = None) -> CampaignMeasurement:
    return ws.measure.campaign(name, as_of=_utc(as_of))


@router.get("/campaigns/{name}/allocation", response_model=Allocation,
            summary="The next round's budget per segment and variant (Thompson sampling on ROI)")
def allocation(
    ws: WS,
    name: CampaignName,
    budget: Annotated[float, Query(gt=0, le=BUDGET_MAX, description="the next round's budget")],
    min_share: Annotated[
        float | None, Query(ge=0, lt=1, description="least share of any arm (default [measure] min_share)")
    ] = None,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="seed of the posterior draws")] = 0,
    as_of: AsOf = None,
) -> Allocation:
    return ws.measure.allocate(name, budget, min_share=min_share, seed=seed, as_of=_utc(as_of))


@router.get(
    "/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                     "description": "One self-contained HTML page with charts"}},
    summary="The workspace's HTML report, with a campaign's sections first when one is named",
)
def report(
    ws: WS,
    campaign: Annotated[str | None, Query(pattern=CAMPAIGN_NAME_PATTERN, description="a campaign")] = None,
) -> HTMLResponse:
    return HTMLResponse(ws.reports.build(campaign=campaign))
