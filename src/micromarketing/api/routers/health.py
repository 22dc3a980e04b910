"""``GET /api/v1/health``: the server is up (no key; never touches the warehouse, so never waits)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

import micromarketing

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str


@router.get("/health", response_model=Health, summary="Liveness check")
def health() -> Health:
    return Health(status="ok", version=micromarketing.__version__)
