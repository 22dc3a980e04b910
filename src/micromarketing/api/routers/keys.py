"""API keys (admin only): list, create (the key is in this one response), revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from micromarketing.api.auth import Admin, actor
from micromarketing.api.deps import WS
from micromarketing.api.pagination import Page, Paging, window

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[Admin])
Role = Literal["viewer", "marketer", "admin"]


class KeyOut(BaseModel):
    id: int
    prefix: str
    role: Role
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyIn(BaseModel):
    role: Role
    name: str = Field(default="", max_length=128)


class CreatedKeyOut(BaseModel):
    key: str = Field(description="shown this once; store it now")
    id: int
    role: Role
    name: str
    prefix: str


@router.get("", response_model=Page[KeyOut], summary="List API keys")
def list_keys(ws: WS, paging: Paging) -> Page[KeyOut]:
    return window([KeyOut.model_validate(k.model_dump()) for k in ws.api_keys.list()], paging)


@router.post("", response_model=CreatedKeyOut, status_code=201, summary="Create an API key")
def create_key(ws: WS, body: KeyIn, request: Request) -> CreatedKeyOut:
    created = ws.api_keys.create(body.role, body.name, actor=actor(request))
    return CreatedKeyOut.model_validate(created.model_dump())


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key")
def revoke_key(ws: WS, key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request) -> KeyOut:
    return KeyOut.model_validate(ws.api_keys.revoke(key_id, actor=actor(request)).model_dump())
