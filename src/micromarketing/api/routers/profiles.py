"""``GET /api/v1/profiles/rfm``: customers and revenue per RFM segment of the current profiles."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from micromarketing.api.auth import Viewer
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, window
from micromarketing.api.routers import plain

router = APIRouter(prefix="/profiles", tags=["profiles"], dependencies=[Viewer])


class RfmRow(BaseModel):
    rfm_segment: str
    customers: int
    share: float | None
    revenue: float | None
    revenue_share: float | None


@router.get("/rfm", response_model=Page[RfmRow], summary="RFM segment summary")
def rfm(ws: WS, paging: Paging) -> Page[RfmRow]:
    rows = plain(ws.rfm_summary().to_dict(orient="records"))
    return window([RfmRow.model_validate(r) for r in rows], paging)
