"""``GET /api/v1/clv``: the latest customer-lifetime-value fit (parameters, fit quality, as-of)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from micromarketing.api.auth import Viewer
from micromarketing.api.deps import WS
from micromarketing.api.routers import plain
from micromarketing.errors import NotFoundError

router = APIRouter(prefix="/clv", tags=["clv"], dependencies=[Viewer])


@router.get("", response_model=dict[str, Any], summary="Latest CLV fit")
def latest(ws: WS) -> dict[str, Any]:
    fit = ws.clv.latest()
    if fit is None:
        raise NotFoundError("no CLV model has been fitted yet (run `micromarketing clv fit`)")
    return plain(fit.to_dict())
