"""Message templates: list, read, add a version, preview for one customer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from micromarketing.api.auth import Marketer, Viewer
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, window
from micromarketing.api.routers import plain

router = APIRouter(prefix="/templates", tags=["templates"], dependencies=[Viewer])
TemplateName = Annotated[str, Path(min_length=1, max_length=128, description="the template's name")]
PART_MAX = 200_000


class TemplateOut(BaseModel):
    name: str
    version: int
    kind: str
    parts: dict[str, str]
    variables: list[str]


class TemplateIn(BaseModel):
    """A new version of a message template: at least one of its parts."""

    subject: str | None = Field(default=None, max_length=1_000)
    html: str | None = Field(default=None, max_length=PART_MAX)
    text: str | None = Field(default=None, max_length=PART_MAX)
    sms: str | None = Field(default=None, max_length=2_000)


class RenderedOut(BaseModel):
    customer_id: str
    subject: str | None
    html: str | None
    text: str | None
    sms: str | None


@router.get("", response_model=Page[TemplateOut], summary="List templates and blocks")
def list_templates(ws: WS, paging: Paging) -> Page[TemplateOut]:
    return window([TemplateOut.model_validate(plain(t)) for t in ws.templates.list()], paging)


@router.get("/{name}", response_model=TemplateOut, summary="One template version")
def get_template(
    ws: WS, name: TemplateName, version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
) -> TemplateOut:
    return TemplateOut.model_validate(plain(ws.templates.get(name, version)))


@router.put("/{name}", response_model=TemplateOut, dependencies=[Marketer],
            summary="Store a new version of a template")
def put_template(ws: WS, name: TemplateName, body: TemplateIn) -> TemplateOut:
    parts = {k: v for k, v in body.model_dump().items() if v is not None}
    return TemplateOut.model_validate(plain(ws.templates.add(name, parts)))


@router.get("/{name}/preview", response_model=RenderedOut, summary="Render for one customer")
def preview(
    ws: WS,
    name: TemplateName,
    customer_id: Annotated[str, Query(min_length=1, max_length=128)],
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    k: Annotated[int, Query(ge=1, le=20, description="recommendations to render")] = 5,
) -> RenderedOut:
    return RenderedOut.model_validate(plain(ws.templates.preview(name, customer_id, k=k, version=version)))
