"""Privacy (admin only): erase a person, export everything held about them, read the audit log.

The person's id travels in the request body, not the URL, so access logs do not collect it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from micromarketing.api.auth import Admin, actor
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, page
from micromarketing.api.routers import plain
from micromarketing.privacy.results import AuditEntry, ErasureReport, PersonalDataExport

router = APIRouter(prefix="/privacy", tags=["privacy"], dependencies=[Admin])


class PersonIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=128, description="the person's customer id")


@router.post("/forget", response_model=ErasureReport,
             summary="Erase a person from both stores and the workspace's files")
def forget(ws: WS, body: PersonIn, request: Request) -> ErasureReport:
    return ws.privacy.forget(body.customer_id, actor=actor(request))


@router.post("/export", response_model=PersonalDataExport,
             summary="Everything held about a person (access / portability request)")
def export(ws: WS, body: PersonIn, request: Request) -> PersonalDataExport:
    return PersonalDataExport.model_validate(plain(ws.privacy.export(body.customer_id, actor=actor(request))))


@router.get("/audit", response_model=Page[AuditEntry], summary="The audit log, newest first")
def audit_log(
    ws: WS,
    paging: Paging,
    since: Annotated[datetime | None, Query(description="only records at or after this instant")] = None,
    action: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="one action, or a prefix ending in '.' (privacy.)"),
    ] = None,
) -> Page[AuditEntry]:
    entries = ws.privacy.audit_log(since=since, action=action, limit=paging.limit, offset=paging.offset)
    total = ws.privacy.audit_count(since=since, action=action)
    return page([AuditEntry.model_validate(plain(e)) for e in reversed(entries)], total, paging)
