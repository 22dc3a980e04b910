"""Segments: list, read, create, new version, delete, preview with a live count, members by page."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from micromarketing.api.auth import Marketer, Viewer, actor
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, page, window
from micromarketing.api.routers import plain

router = APIRouter(prefix="/segments", tags=["segments"], dependencies=[Viewer])
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"
SegmentName = Annotated[str, Path(pattern=NAME_PATTERN, description="the segment's name")]
RULE_MAX = 10_000


class SegmentOut(BaseModel):
    name: str
    kind: str
    description: str
    version: int
    rule: str
    created_at: datetime
    updated_at: datetime
    details: dict[str, Any]
    size: int | None = None
    as_of: date | None = None


class SegmentIn(BaseModel):
    """A new rule segment."""

    name: str = Field(pattern=NAME_PATTERN)
    rule: str = Field(min_length=1, max_length=RULE_MAX)
    description: str = Field(default="", max_length=2_000)
    allow_sensitive: bool = False
    reason: str | None = Field(default=None, max_length=2_000)
    as_of: date | None = None


class SegmentVersionIn(BaseModel):
    """A new version of an existing rule segment."""

    rule: str = Field(min_length=1, max_length=RULE_MAX)
    description: str = Field(default="", max_length=2_000)
    allow_sensitive: bool = False
    reason: str | None = Field(default=None, max_length=2_000)
    as_of: date | None = None


class MaterialisationOut(BaseModel):
    segment: str
    version: int
    as_of: date
    size: int
    warnings: list[str]


class PreviewIn(BaseModel):
    rule: str = Field(min_length=1, max_length=RULE_MAX)
    as_of: date | None = None
    sample: int = Field(default=10, ge=0, le=100)


class Difference(BaseModel):
    field: str
    kind: str
    segment_value: float | str | None
    base_value: float | str | None
    score: float | None
    detail: str


class PreviewOut(BaseModel):
    rule: str
    as_of: date
    size: int
    base_size: int
    share_of_base: float | None
    revenue_share: float | None
    average_clv: float | None
    sample: list[dict[str, Any]]
    differences: list[Difference]
    warnings: list[str]


@router.get("", response_model=Page[SegmentOut], summary="List segments")
def list_segments(ws: WS, paging: Paging) -> Page[SegmentOut]:
    return window([SegmentOut.model_validate(plain(s)) for s in ws.segments.list()], paging)


@router.post("", response_model=MaterialisationOut, status_code=201, dependencies=[Marketer],
             summary="Create a rule segment")
def create_segment(ws: WS, body: SegmentIn, request: Request) -> MaterialisationOut:
    result = ws.segments.create(
        body.name, body.rule, description=body.description, allow_sensitive=body.allow_sensitive,
        reason=body.reason, as_of=body.as_of, actor=actor(request),
    )
    return MaterialisationOut.model_validate(plain(result))


@router.post("/preview", response_model=PreviewOut, summary="Preview a rule: live count, sample, traits")
def preview_rule(ws: WS, body: PreviewIn) -> PreviewOut:
    return PreviewOut.model_validate(plain(ws.segments.preview(rule=body.rule, as_of=body.as_of,
                                                                 sample=body.sample)))


@router.get("/{name}", response_model=SegmentOut, summary="One segment")
def get_segment(ws: WS, name: SegmentName) -> SegmentOut:
    return SegmentOut.model_validate(plain(ws.segments.get(name)))


@router.put("/{name}", response_model=MaterialisationOut, dependencies=[Marketer],
            summary="Store a new version of a rule segment")
def update_segment(ws: WS, name: SegmentName, body: SegmentVersionIn, request: Request) -> MaterialisationOut:
    result = ws.segments.create(
        name, body.rule, description=body.description, allow_sensitive=body.allow_sensitive,
        reason=body.reason, as_of=body.as_of, replace=True, actor=actor(request),
    )
    return MaterialisationOut.model_validate(plain(result))


@router.delete("/{name}", status_code=204, response_class=Response, dependencies=[Marketer],
               summary="Delete a segment")
def delete_segment(ws: WS, name: SegmentName, request: Request) -> Response:
    ws.segments.delete(name, actor=actor(request))
    return Response(status_code=204)


@router.get("/{name}/preview", response_model=PreviewOut, summary="Preview a stored segment")
def preview_segment(
    ws: WS, name: SegmentName, as_of: date | None = None,
    sample: Annotated[int, Query(ge=0, le=100)] = 10,
) -> PreviewOut:
    return PreviewOut.model_validate(plain(ws.segments.preview(name, as_of=as_of, sample=sample)))


@router.get("/{name}/members", response_model=Page[str], summary="Members' ids, by page")
def members(ws: WS, name: SegmentName, paging: Paging, as_of: date | None = None) -> Page[str]:
    ids, total = ws.segments.members(name, as_of=as_of, limit=paging.limit, offset=paging.offset)
    return page(ids, total, paging)
