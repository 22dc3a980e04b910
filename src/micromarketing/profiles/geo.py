"""Location features: each customer's nearest store and the distance to it.

The nearest store is a cross join of customers and stores (a million customers × tens of stores),
the most expensive part of a profile, and it depends only on where customers and stores are, not
on the as-of date.  So it is materialised in ``customer_geo`` together with a fingerprint of the
inputs, and recomputed only when a customer's or a store's coordinates change.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from micromarketing.exprs import arg_min, haversine_km
from micromarketing.workspace import Workspace

GEO_TABLE = "customer_geo"
GEO_FINGERPRINT_TABLE = "customer_geo_fingerprint"


def customer_geo(ws: Workspace) -> ir.Table:
    """The ``customer_geo`` table (customer_id, nearest_store_id, nearest_store_km), kept fresh."""
    customers, stores = ws.table("customers"), ws.table("stores")
    fingerprint = _fingerprint(customers, stores)
    warehouse = ws.warehouse
    if warehouse.has_table(GEO_TABLE) and warehouse.has_table(GEO_FINGERPRINT_TABLE):
        stored = warehouse.table(GEO_FINGERPRINT_TABLE).fingerprint.execute().tolist()
        if stored == [fingerprint]:
            return warehouse.table(GEO_TABLE)
    geo = warehouse.replace_table(GEO_TABLE, nearest_store_expr(customers, stores))
    warehouse.create_from(GEO_FINGERPRINT_TABLE, ibis.memtable({"fingerprint": [fingerprint]}))
    return geo


def nearest_store_expr(customers: ir.Table, stores: ir.Table) -> ir.Table:
    """Nearest store and its great-circle distance for every customer with coordinates."""
    located = customers.filter(customers.lat.notnull() & customers.lon.notnull()).select(
        "customer_id", c_lat=customers.lat, c_lon=customers.lon
    )
    pairs = located.cross_join(stores.select("store_id", s_lat=stores.lat, s_lon=stores.lon))
    pairs = pairs.mutate(km=haversine_km(pairs.c_lat, pairs.c_lon, pairs.s_lat, pairs.s_lon))
    return pairs.group_by("customer_id").aggregate(
        nearest_store_id=arg_min(pairs.store_id, pairs.km), nearest_store_km=pairs.km.min()
    )


def _fingerprint(customers: ir.Table, stores: ir.Table) -> str:
    """Order-independent digest of every customer's and store's id and coordinates."""
    parts = []
    for table, key in ((customers, "customer_id"), (stores, "store_id")):
        prime = 2_147_483_647  # keeps every term, and the sum of a billion of them, inside int64
        row = (
            table[key].hash() % prime
            + (table.lat.hash() % prime) * 31 % prime
            + (table.lon.hash() % prime) * 961 % prime
        )
        # A sum of per-row hashes ignores row order.
        result = table.aggregate(n=table.count(), h=row.sum()).execute()
        parts.append(f"{int(result['n'][0])}:{result['h'][0]}")
    return "|".join(parts)
