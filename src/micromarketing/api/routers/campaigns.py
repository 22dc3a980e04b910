"""Campaigns: list, plan (nothing written), run (assign and fill the outbox), status.

A campaign is sent as its YAML file's text (``{"spec": "name: …"}``; JSON is YAML too), so the
API checks it exactly as ``micromarketing campaign plan FILE`` does and its errors name the line.
Running fills the outbox only: the delivery worker (``micromarketing deliver``) sends, so a
request never waits on a mail server.  Running the same campaign again adds nothing (200).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from micromarketing.api.auth import Marketer, Viewer, actor
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, window
from micromarketing.api.routers import plain
from micromarketing.campaigns.results import CampaignPlan, CampaignStatus, CampaignSummary, RunResult

router = APIRouter(prefix="/campaigns", tags=["campaigns"], dependencies=[Viewer])
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
CampaignName = Annotated[str, Path(pattern=CAMPAIGN_NAME_PATTERN, description="the campaign's name")]
SPEC_MAX = 100_000


class CampaignIn(BaseModel):
    """A campaign file's text (YAML or JSON)."""

    spec: str = Field(min_length=1, max_length=SPEC_MAX, description="the campaign file's text")


@router.get("", response_model=Page[CampaignSummary], summary="List campaigns, newest first")
def list_campaigns(ws: WS, paging: Paging) -> Page[CampaignSummary]:
    return window([CampaignSummary.model_validate(plain(c)) for c in ws.campaigns.list()], paging)


@router.post("/plan", response_model=CampaignPlan, summary="Plan a campaign: reach, cost, returns, power")
def plan_campaign(ws: WS, body: CampaignIn) -> CampaignPlan:
    spec = ws.campaigns.parse(body.spec, source="request body")
    return CampaignPlan.model_validate(plain(ws.campaigns.plan(spec)))


@router.post(
    "",
    response_model=RunResult,
    status_code=201,
    dependencies=[Marketer],
    responses={200: {"model": RunResult, "description": "Already run: nothing was added"}},
    summary="Run a campaign: assign members and fill the outbox",
)
def run_campaign(ws: WS, body: CampaignIn, request: Request, response: Response) -> RunResult:
    spec = ws.campaigns.parse(body.spec, source="request body")
    result = ws.campaigns.run(spec, actor=actor(request))
    if result.already_run:
        response.status_code = 200
    return RunResult.model_validate(plain(result))


@router.get("/{name}", response_model=CampaignStatus, summary="A campaign's outbox counts and control group")
def campaign_status(ws: WS, name: CampaignName) -> CampaignStatus:
    return CampaignStatus.model_validate(plain(ws.campaigns.status(name)))
