"""Per-customer rollups of the big fact tables, kept current by the warehouse on every write.

A profile needs, per customer, a handful of figures summarised from ~10 order lines and ~10
events each, and the nearest of the stores (a customers × stores cross join).  Computing those
from tens of millions of rows dominated the profile's time, so the warehouse keeps one row per
customer for each rollup below and refreshes, on every write of the source table, the rows of
exactly the customers that write touched; a write of another input (stores) rebuilds the rollup
whole (see :meth:`Warehouse.upsert`).

Each rollup is *defined once*, as an Ibis expression over its source rows (:attr:`Rollup.build`).
The maintained table is that expression over every stored row; a query that needs only the rows
before a cutoff gets the maintained table when every stored row is older than the cutoff (the
usual "profile as of today"), and otherwise the same expression over the filtered source
(:meth:`Warehouse.rollup`).  Both answers are therefore the same by construction, on DuckDB and
on Spark alike, and tests check it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from micromarketing.exprs import arg_max, arg_min, haversine_km
from micromarketing.store.schema import ENGAGEMENT_CHANNELS


@dataclass(frozen=True)
class Rollup:
    """A per-customer summary of ``source`` that the warehouse maintains on every write."""

    name: str
    source: str  # the table it summarises: a write refreshes the customers it touches
    build: Callable[..., ir.Table]  # (source rows, *input tables) -> one row per customer_id
    inputs: tuple[str, ...] = ()  # other tables it reads: a write to one rebuilds it whole
    time: str | None = None  # the source's timestamp column: cutoffs are "strictly before" on it
    newest: str | None = None  # the rollup column holding each customer's newest ``time``
    # Stored rows that share these columns with a written row may change the rollup: their
    # customers are refreshed too (a replaced row may have moved to another customer, and a new
    # line can change which line heads an order).
    touches: tuple[str, ...] = ()


def customer_orders(transactions: ir.Table) -> ir.Table:
    """First and last order, distinct orders, spend (to the cent) and top category per customer.

    One pass over the lines by (customer, category) gives everything; orders are counted as
    ``order_head`` lines, so no ``COUNT(DISTINCT)`` pass is needed.
    """
    tx = transactions
    # Sums are rounded to cents: parallel float sums differ in their last bits from run to run,
    # which would break ties between categories at random and could move a customer across a
    # quintile boundary of the RFM scores.
    by_category = tx.group_by("customer_id", "category").aggregate(
        spend=tx.amount.sum().round(2),
        first_at=tx.ordered_at.min(),
        last_at=tx.ordered_at.max(),
        orders=tx.order_head.cast("int64").sum(),
    )
    return by_category.group_by("customer_id").aggregate(
        first_order_at=by_category.first_at.min(),
        last_order_at=by_category.last_at.max(),
        orders=by_category.orders.sum(),
        spend=by_category.spend.sum().round(2),
        top_category=arg_max(by_category.category, by_category.spend),  # uncategorised never wins
    )


def customer_engagement(events: ir.Table) -> ir.Table:
    """Engagement events, the channel with most of them, and the last event of each customer.

    An event's own channel wins over the one its type implies (:data:`ENGAGEMENT_CHANNELS`);
    events that show no channel (an unsubscribe) count towards ``last_event_at`` only.
    """
    by_kind = events.group_by("customer_id", "event_type", "channel").aggregate(
        n=events.count(), last_at=events.occurred_at.max()
    )
    implied = ibis.cases(*((by_kind.event_type == k, v) for k, v in ENGAGEMENT_CHANNELS.items()), else_=None)
    engaged = by_kind.mutate(engaged_channel=ibis.coalesce(by_kind.channel, implied))
    counts = engaged.group_by("customer_id", "engaged_channel").aggregate(
        n=engaged.n.sum(), last_at=engaged.last_at.max()
    )
    return counts.group_by("customer_id").aggregate(
        engagement_events=counts.n.sum(where=counts.engaged_channel.notnull()).fill_null(0),
        preferred_channel=arg_max(counts.engaged_channel, counts.n),  # a NULL channel never wins
        last_event_at=counts.last_at.max(),
    )


def nearest_store(customers: ir.Table, stores: ir.Table) -> ir.Table:
    """Nearest store and the great-circle distance to it, for every customer with coordinates.

    Candidates are ranked by the equirectangular approximation (squared degrees, longitude scaled
    by the cosine of the pair's mean latitude): one cosine per customer × store pair instead of
    the haversine's five trigonometric calls, which cuts the cost of the cross join by about a
    third.  At country scale it stays within about 0.5 % of the great-circle distance, so only a
    near-tie can pick a store that is marginally farther; the reported ``nearest_store_km`` is the
    exact haversine distance to the chosen store.
    """
    located = customers.filter(customers.lat.notnull() & customers.lon.notnull()).select(
        "customer_id",
        c_lat=customers.lat,
        c_lon=customers.lon,
    )
    sites = stores.select("store_id", s_lat=stores.lat, s_lon=stores.lon)
    pairs = located.cross_join(sites)
    pairs = pairs.mutate(
        flat_d2=((pairs.s_lon - pairs.c_lon) * ((pairs.c_lat + pairs.s_lat) / 2).radians().cos()) ** 2
        + (pairs.s_lat - pairs.c_lat) ** 2
    )
    nearest = pairs.group_by("customer_id").aggregate(nearest_store_id=arg_min(pairs.store_id, pairs.flat_d2))
    chosen = nearest.join(located, "customer_id").join(sites, nearest.nearest_store_id == sites.store_id)
    return chosen.select(
        "customer_id",
        "nearest_store_id",
        nearest_store_km=haversine_km(chosen.c_lat, chosen.c_lon, chosen.s_lat, chosen.s_lon),
    )


ROLLUPS: dict[str, Rollup] = {
    r.name: r
    for r in (
        Rollup(
            name="customer_orders",
            source="transactions",
            build=customer_orders,
            time="ordered_at",
            newest="last_order_at",
            touches=("order_id",),
        ),
        Rollup(
            name="customer_engagement",
            source="events",
            build=customer_engagement,
            time="occurred_at",
            newest="last_event_at",
            touches=("event_id",),
        ),
        # Where customers are, not when: a location has no as-of date.
        Rollup(name="customer_geo", source="customers", build=nearest_store, inputs=("stores",)),
    )
}


def refreshed_by(table: str) -> tuple[Rollup, ...]:
    """The rollups whose rows of the touched customers a write of ``table`` must refresh."""
    return tuple(r for r in ROLLUPS.values() if r.source == table)


def rebuilt_by(table: str) -> tuple[Rollup, ...]:
    """The rollups a write of ``table`` must rebuild whole (it is one of their inputs)."""
    return tuple(r for r in ROLLUPS.values() if table in r.inputs)
