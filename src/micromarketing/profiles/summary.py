"""Read-side views of the profiles: the RFM segment summary and the segment-of-one customer view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ibis
import pandas as pd

from micromarketing.errors import NotFoundError
from micromarketing.privacy.consent import current_consent
from micromarketing.profiles.build import NO_ORDERS_SEGMENT, RFM_GRID
from micromarketing.store.context import StoreContext
from micromarketing.store.schema import DEFAULT_PURPOSE

RFM_SEGMENT_ORDER = [name for name, _, _ in RFM_GRID] + [NO_ORDERS_SEGMENT]


def rfm_summary(ctx: StoreContext) -> pd.DataFrame:
    """Customers, share of base, revenue and revenue share per named RFM segment, in grid order."""
    profiles = ctx.table("profiles")
    grouped = profiles.group_by("rfm_segment").aggregate(
        customers=profiles.count(), revenue=profiles.monetary.sum()
    )
    frame = grouped.execute()
    frame["share"] = frame["customers"] / frame["customers"].sum()
    total_revenue = frame["revenue"].sum()
    frame["revenue_share"] = frame["revenue"] / total_revenue if total_revenue else 0.0
    order = {name: i for i, name in enumerate(RFM_SEGMENT_ORDER)}
    frame = frame.sort_values("rfm_segment", key=lambda s: s.map(order))
    return frame[["rfm_segment", "customers", "share", "revenue", "revenue_share"]].reset_index(drop=True)


@dataclass(frozen=True)
class CustomerView:
    """Everything we know about one customer: attributes, profile, recent orders, consent."""

    customer_id: str
    attributes: dict[str, Any]
    profile: dict[str, Any] | None
    recent_orders: list[dict[str, Any]] = field(default_factory=list)
    consent: dict[str, str] = field(default_factory=dict)


def customer_view(ctx: StoreContext, customer_id: str, orders: int = 10) -> CustomerView:
    """The segment-of-one view of ``customer_id`` (raises NotFoundError for an unknown id)."""
    customers = ctx.table("customers")
    attributes = _one_row(customers.filter(customers.customer_id == customer_id))
    profile = None
    if ctx.warehouse.has_table("profiles"):
        profiles = ctx.table("profiles")
        profile = _one_row(profiles.filter(profiles.customer_id == customer_id))
    if attributes is None and profile is None:
        raise NotFoundError(f"customer {customer_id!r} not found")

    tx = ctx.table("transactions").filter(lambda t: t.customer_id == customer_id)
    recent = (
        tx.group_by("order_id")
        .aggregate(
            ordered_at=tx.ordered_at.min(),
            lines=tx.count(),
            amount=tx.amount.sum(),
            currency=tx.currency.arbitrary(),
            channel=tx.channel.arbitrary(),
        )
        .order_by(ibis.desc("ordered_at"))
        .limit(orders)
    )
    in_force = current_consent(ctx, customer_id)
    latest = in_force.filter(in_force.purpose == DEFAULT_PURPOSE)
    return CustomerView(
        customer_id=customer_id,
        attributes=attributes or {"customer_id": customer_id},
        profile=profile,
        recent_orders=_records(recent.execute()),
        consent={row["channel"]: row["status"] for row in _records(latest.execute())},
    )


def _one_row(expr: ibis.Table) -> dict[str, Any] | None:
    rows = _records(expr.limit(1).execute())
    return rows[0] if rows else None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with None for missing values (NaN/NaT are not JSON)."""
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")
