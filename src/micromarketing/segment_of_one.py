"""The segment-of-one view the REST API and the dashboard show: one customer, everything about them.

Profile and recent orders (:func:`~micromarketing.profiles.summary.customer_view`), the segments
whose current materialisation holds them, and the consent ledger (newest first).  Recommendations
and the next best offer are separate calls (they load models and are costlier than this view).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from micromarketing.preferences import ConsentRecord, consent_history
from micromarketing.profiles.summary import customer_view
from micromarketing.segments.definitions import MEMBERS_TABLE, Segments
from micromarketing.store.context import StoreContext


class SegmentOfOne(BaseModel):
    """One customer: attributes, profile, recent orders, current consent and its history, segments."""

    customer_id: str
    attributes: dict[str, Any]
    profile: dict[str, Any] | None
    recent_orders: list[dict[str, Any]]
    consent: dict[str, str]
    consent_history: list[ConsentRecord]
    segments: list[str]


def segments_of(ctx: StoreContext, customer_id: str) -> list[str]:
    """Names of the segments whose latest materialisation of their current version holds the customer."""
    if not ctx.warehouse.has_table(MEMBERS_TABLE):
        return []
    members = ctx.table(MEMBERS_TABLE)
    mine = members.filter(members.customer_id == customer_id).select("segment", "version", "as_of")
    latest = members.filter(members.segment.isin(mine.segment)).group_by(["segment", "version"]).aggregate(
        latest=members.as_of.max()
    )
    rows = (
        mine.join(latest, ["segment", "version"])
        .filter(lambda t: t.as_of == t.latest)
        .select("segment", "version")
        .to_pyarrow()
        .to_pylist()
    )
    current = Segments(ctx)._current_versions()
    return sorted({r["segment"] for r in rows if current.get(r["segment"]) == int(r["version"])})


def segment_of_one(ctx: StoreContext, customer_id: str, orders: int = 10, history: int = 100) -> SegmentOfOne:
    """The view of ``customer_id`` (raises NotFoundError for an unknown id)."""
    view = customer_view(ctx, customer_id, orders)
    return SegmentOfOne(
        customer_id=view.customer_id,
        attributes=view.attributes,
        profile=view.profile,
        recent_orders=view.recent_orders,
        consent=view.consent,
        consent_history=consent_history(ctx, customer_id, limit=history),
        segments=segments_of(ctx, customer_id),
    )

