"""The segment-of-one view the REST API and the dashboard show: one customer, everything about them.

Profile and recent orders (as :func:`~micromarketing.profiles.summary.customer_view` gives them),
the segments whose current materialisation holds them, and the consent ledger: the channel
consent in force (purpose ``marketing``), the topic choices in force (every other purpose, see
:mod:`micromarketing.preferences`) and the records, newest first.  Recommendations and the next
best offer are separate calls (they load models).

This is the API's hot path (a lookup per page view), and compiling its half-dozen Ibis
expressions costs twenty times more than running them.  On DuckDB it therefore runs the same
queries as fixed SQL with the customer id bound as a parameter (:func:`_fast_view`); other
backends take the Ibis path (:func:`_portable_view`).  A test holds the two to the same answer.
Every query reads one customer's rows through the warehouse's customer_id indexes
(:data:`~micromarketing.store.warehouse.CUSTOMER_KEYED`); which tables exist and which
materialisation of a segment is the latest are remembered between lookups until the warehouse
changes (:meth:`~micromarketing.store.warehouse.Warehouse.memo`), so a lookup is five point
queries and no scan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from micromarketing.errors import NotFoundError
from micromarketing.preferences import ConsentRecord, recent_consent
from micromarketing.privacy.consent import (
    DEFAULT_PURPOSE,
    VALID_AT_SQL,
    consent_state,
    moment,
)
from micromarketing.profiles.summary import customer_view
from micromarketing.segments.definitions import MEMBERS_TABLE, Segments
from micromarketing.store.context import StoreContext


class SegmentOfOne(BaseModel):
    """One customer: attributes, profile, recent orders, current consent and its history, segments."""

    customer_id: str
    attributes: dict[str, Any]
    profile: dict[str, Any] | None
    recent_orders: list[dict[str, Any]]
    consent: dict[str, str] = Field(description="channel -> marketing consent status in force")
    topics: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="topic -> channel -> status in force (absent: never chosen)"
    )
    consent_history: list[ConsentRecord] = Field(description="ledger records, newest first")
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


def segment_of_one(
    ctx: StoreContext, customer_id: str, orders: int = 10, history: int = 100, *, at: datetime | None = None
) -> SegmentOfOne:
    """The view of ``customer_id`` with the consent in force at ``at`` (default now; raises
    NotFoundError for an unknown id)."""
    if ctx.warehouse.backend_name == "duckdb":
        return _fast_view(ctx, customer_id, orders, history, at)
    return _portable_view(ctx, customer_id, orders, history, at)


# The customer's rows are read in a MATERIALIZED CTE: with ORDER BY … LIMIT straight on the
# table, DuckDB's top-N filter pushdown turns the index scan on customer_id into a full scan.
_ORDERS = (
    "WITH mine AS MATERIALIZED (SELECT order_id, ordered_at, amount, currency, channel FROM transactions"
    " WHERE customer_id = $1) SELECT order_id, min(ordered_at) AS ordered_at, count(*) AS lines,"
    " sum(amount) AS amount, any_value(currency) AS currency, any_value(channel) AS channel FROM mine"
    " GROUP BY order_id ORDER BY ordered_at DESC LIMIT $2"
)
# Every ledger record of the customer, newest first (ties as privacy.consent_history orders them,
# reversed: the portable path's order), each flagged ``valid`` at the bound moment by the ledger's
# own fragment.  Within one (channel, purpose) this order is privacy.consent's LATEST_FIRST_SQL,
# so the first valid record of each is the one in force: one statement gives both.  (Ranking
# with a window function in the statement instead cost half a millisecond more per lookup.)
_LEDGER = (
    "WITH mine AS MATERIALIZED (SELECT channel, status, recorded_at, source, valid_until,"
    f" coalesce(purpose, '{DEFAULT_PURPOSE}') AS purpose FROM consent WHERE customer_id = $1)"
    f" SELECT *, {VALID_AT_SQL.format(at='$2::TIMESTAMPTZ')} AS valid"
    " FROM mine ORDER BY recorded_at DESC, channel DESC, purpose DESC, status DESC"
)
_MEMBERSHIPS = "SELECT segment, version, as_of FROM segment_members WHERE customer_id = $1"


def _fast_view(
    ctx: StoreContext, customer_id: str, orders: int, history: int, at: datetime | None = None
) -> SegmentOfOne:
    fetch = ctx.warehouse.fetch
    tables = ctx.warehouse.table_names()
    found = fetch("SELECT * FROM customers WHERE customer_id = $1 LIMIT 1", [customer_id])
    profile = None
    if "profiles" in tables:
        rows = fetch("SELECT * FROM profiles WHERE customer_id = $1 LIMIT 1", [customer_id])
        profile = _finite(rows[0]) if rows else None
    if not found and profile is None:
        raise NotFoundError(f"customer {customer_id!r} not found")
    memberships: list[str] = []
    if MEMBERS_TABLE in tables:
        rows = fetch(_MEMBERSHIPS, [customer_id])
        latest = Segments(ctx).latest_materialisations({r["segment"] for r in rows})
        memberships = sorted(
            {r["segment"] for r in rows if latest.get(r["segment"]) == (int(r["version"]), r["as_of"])}
        )
    ledger = fetch(_LEDGER, [customer_id, moment(at)])
    in_force: dict[tuple[str, str], str] = {}
    for r in ledger:
        if r.pop("valid"):
            in_force.setdefault((r["purpose"], r["channel"]), r["status"])
    return SegmentOfOne(
        customer_id=customer_id,
        attributes=_finite(found[0]) if found else {"customer_id": customer_id},
        profile=profile,
        recent_orders=[_finite(r) for r in fetch(_ORDERS, [customer_id, orders])],
        **_consent_fields(in_force),
        consent_history=[ConsentRecord(**r) for r in ledger[:history]],
        segments=memberships,
    )


def _consent_fields(in_force: dict[tuple[str, str], str]) -> dict[str, Any]:
    """``consent`` and ``topics`` from (purpose, channel) -> status in force."""
    topics: dict[str, dict[str, str]] = {}
    for (purpose, channel), status in sorted(in_force.items()):
        topics.setdefault(purpose, {})[channel] = status
    return {"consent": topics.pop(DEFAULT_PURPOSE, {}), "topics": topics}


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is no value (as the Ibis path's frames give None); a naive timestamp is UTC (the stores
    keep UTC; Spark hands it back naive), so the view serialises as it is."""
    return {k: _json_ready(v) for k, v in row.items()}


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _portable_view(
    ctx: StoreContext, customer_id: str, orders: int, history: int, at: datetime | None = None
) -> SegmentOfOne:
    view = customer_view(ctx, customer_id, orders)
    return SegmentOfOne(
        customer_id=view.customer_id,
        attributes=_finite(view.attributes),
        profile=_finite(view.profile) if view.profile is not None else None,
        recent_orders=[_finite(r) for r in view.recent_orders],
        **_consent_fields({(r.purpose, r.channel): r.status for r in consent_state(ctx, customer_id, at=at)}),
        consent_history=recent_consent(ctx, customer_id, limit=history),
        segments=segments_of(ctx, customer_id),
    )

