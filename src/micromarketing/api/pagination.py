"""Pagination of every list the API returns: ``limit`` (at most :data:`MAX_LIMIT`) and ``offset``.

A page says how many items exist in all (``total``) and where the next page starts
(``next_offset``, None on the last page), so clients never guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class PageParams(BaseModel):
    """The requested window of a list."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Paging = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def page(items: Sequence[T], total: int, params: PageParams) -> Page[T]:
    """A page of ``items`` (already windowed) out of ``total``."""
    following = params.offset + len(items)
    return Page[T](
        items=list(items),
        total=total,
        limit=params.limit,
        offset=params.offset,
        next_offset=following if following < total else None,
    )


def window(items: Sequence[T], params: PageParams) -> Page[T]:
    """A page cut from a complete (small) list: segments, templates, keys."""
    return page(items[params.offset : params.offset + params.limit], len(items), params)
