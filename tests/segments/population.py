"""A small, hand-checkable population for rule-segment tests (shared with tests/test_spark.py).

Eleven customers, two stores, a few orders and events, and a profiles table as of 2024-07-01.
``RULE_CASES`` lists rules with the members each must select, worked out by hand from the rows
below (comments say why).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import ibis
import pandas as pd

from micromarketing.workspace import Workspace

AS_OF = date(2024, 7, 1)
_END = datetime(2024, 7, 1, tzinfo=UTC)


def _ago(days: float) -> datetime:
    return _END - timedelta(days=days)


CUSTOMERS = pd.DataFrame(
    [
        # id,  first, gender, city, postcode, lat, lon, interests, email
        ("C01", "Ana", "F", "Paris", "75011", 48.8600, 2.3800, "running;yoga", "ana@example.com"),
        ("C02", "Bob", "M", "Paris", "75002", 48.8700, 2.3400, "cooking", "bob@example.com"),
        ("C03", "Cleo", "F", "Lyon", "69001", 45.7650, 4.8300, "running;trail", "cleo@example.com"),
        ("C04", "Dan", "M", "Lyon", "69003", 45.7500, 4.8500, "cycling", "dan@example.com"),
        ("C05", "Eva", "F", "Marseille", "13001", 43.3000, 5.3700, "running", None),
        ("C06", "Fred", "M", "Versailles", "78000", 48.8000, 2.1300, "golf", "fred@example.com"),
        ("C07", "Gus", None, "Paris", "75015", 48.8400, 2.3000, None, "gus@example.com"),
        ("C08", "Hana", "F", "Lille", "59000", 50.6300, 3.0600, "yoga", "hana@example.com"),
        ("C09", "Ivo", "M", "Bordeaux", "33000", 44.8400, -0.5800, "wine;cooking", "ivo@example.com"),
        ("C10", "Jade", "F", "Nice", "06000", 43.7000, 7.2700, "running;swim", "jade@example.com"),
        ("C11", "Kim", "F", None, None, None, None, None, None),
    ],
    columns=["customer_id", "first_name", "gender", "city", "postcode", "lat", "lon", "interests", "email"],
)

PROFILES = pd.DataFrame(
    [
        # id, recency, freq, monetary, rfm_segment, age, age_band, clv, last_order days ago
        ("C01", 5, 12, 1500.0, "champions", 29, "25-34", 900.0, 5),
        ("C02", 40, 6, 600.0, "loyal", 41, "35-44", 300.0, 40),
        ("C03", 20, 4, 420.0, "potential_loyalists", 33, "25-34", 250.0, 20),
        ("C04", 100, 3, 180.0, "need_attention", 25, "25-34", 80.0, 100),
        ("C05", 200, 8, 950.0, "cannot_lose", 52, "45-54", 120.0, 200),
        ("C06", 10, 1, 60.0, "new", 34, "25-34", 40.0, 10),
        ("C07", 400, 2, 90.0, "lost", 67, "65+", 5.0, 400),
        ("C08", 95, 5, 500.0, "at_risk", 38, "35-44", 150.0, 95),
        ("C09", 30, 2, 2500.0, "promising", 45, "45-54", 700.0, 30),
        ("C10", 60, 3, 210.0, "need_attention", 22, "18-24", 60.0, 60),
        ("C11", None, 0, 0.0, "prospects", 35, "35-44", None, None),
    ],
    columns=[
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "rfm_segment",
        "age",
        "age_band",
        "clv",
        "_last",
    ],
)

STORES = pd.DataFrame(
    [
        ("S001", "Paris Bastille", "Paris", 48.8566, 2.3522),
        ("S012", "Lyon Part-Dieu", "Lyon", 45.7640, 4.8357),
    ],
    columns=["store_id", "name", "city", "lat", "lon"],
)

TRANSACTIONS = pd.DataFrame(
    [
        # order, line, customer, days ago, product, category, amount, channel
        ("O1", 1, "C01", 5, "P1", "running", 120.0, "online"),
        ("O1", 2, "C01", 5, "P2", "yoga", 40.0, "online"),
        ("O2", 1, "C03", 20, "P1", "running", 120.0, "store"),
        ("O3", 1, "C05", 200, "P1", "running", 120.0, "store"),
        ("O4", 1, "C02", 40, "P9", "kitchen", 60.0, "online"),
        ("O5", 1, "C02", 70, "P9", "kitchen", 60.0, "online"),
        ("O6", 1, "C09", 30, "P7", "wine", 250.0, "online"),
        ("O7", 1, "C10", 60, "P3", "running", 80.0, "app"),
        ("O8", 1, "C01", -3, "P1", "running", 120.0, "online"),  # after the as-of date: never counted
    ],
    columns=["order_id", "line_no", "customer_id", "_days", "product_id", "category", "amount", "channel"],
)

EVENTS = pd.DataFrame(
    [
        # id, customer, type, days ago, product
        ("E01", "C01", "email_click", 1, None),
        ("E02", "C01", "email_click", 10, None),
        ("E03", "C01", "email_click", 29, None),
        ("E04", "C02", "email_click", 3, None),
        ("E05", "C03", "email_click", 2, None),
        ("E06", "C03", "email_click", 40, None),
        ("E07", "C03", "email_click", 5, None),
        ("E08", "C04", "product_view", 2, "P123"),
        ("E09", "C06", "product_view", 10, "P123"),
        ("E10", "C08", "product_view", 1, "P999"),
        ("E11", "C08", "email_open", 1, None),
    ],
    columns=["event_id", "customer_id", "event_type", "_days", "product_id"],
)

# (rule, expected members) — every expectation is checked by hand against the rows above.
RULE_CASES: list[tuple[str, set[str]]] = [
    ("frequency >= 5", {"C01", "C02", "C05", "C08"}),
    ("days_since(last_order) > 90", {"C04", "C05", "C07", "C08"}),  # C11 has no order: null
    ("age between 25 and 34", {"C01", "C03", "C04", "C06"}),
    ("age_band = '25-34' and not (rfm_segment in ('new', 'need_attention'))", {"C01", "C03"}),
    ("city in ('Lyon', 'Paris')", {"C01", "C02", "C03", "C04", "C07"}),
    ("postcode starts_with '75'", {"C01", "C02", "C07"}),
    ("interests contains 'running'", {"C01", "C03", "C05", "C10"}),
    ("email is null", {"C05", "C11"}),
    ("within_km(store('S001'), 5)", {"C01", "C02", "C07"}),  # C07 ~4.2 km; Versailles ~17 km
    ("within_km(48.85, 2.35, 3)", {"C01", "C02"}),  # C07 (48.84, 2.30) is ~3.8 km away
    ("within_km(store('S012'), 5) or city = 'Nice'", {"C03", "C04", "C10"}),
    ("bought(category='running', within_days=90)", {"C01", "C03", "C10"}),  # C05 bought 200 days ago
    ("bought(category='running')", {"C01", "C03", "C05", "C10"}),
    ("viewed(product='P123', within_days=7)", {"C04"}),
    ("events(type='email_click', within_days=30) >= 2", {"C01", "C03"}),
    ("orders(within_days=365) >= 2", {"C02"}),  # C01's second order is after the as-of date
    ("monetary / frequency > 150", {"C09"}),  # C11 has 0 orders: 0 / 0 is null, not an error
    (
        "clv > 100 and recency_days <= 60 or rfm_segment = 'cannot_lose'",
        {"C01", "C02", "C03", "C05", "C09"},
    ),
    ("last_order_at >= '2024-06-01'", {"C01", "C03", "C06", "C09"}),  # C09: exactly 30 days
    ("last_order_at < as_of() - 90", {"C04", "C05", "C07", "C08"}),
    ("gender = 'F' and age < 40", {"C01", "C03", "C08", "C10", "C11"}),
    ("lower(city) = 'paris' and not email ends_with '@example.org'", {"C01", "C02", "C07"}),
]


def build_population(root: Path) -> Workspace:
    """A new workspace in ``root`` holding the population above (DuckDB)."""
    ws = Workspace.init(root)
    wh = ws.warehouse
    customers = CUSTOMERS.copy()
    wh.create_from("customers", customers)
    profiles = PROFILES.copy()
    profiles.insert(1, "as_of", AS_OF)
    profiles["last_order_at"] = [None if pd.isna(d) else _ago(d) for d in profiles.pop("_last")]
    profiles["last_order_at"] = pd.to_datetime(profiles["last_order_at"], utc=True)
    profiles["recency_days"] = profiles["recency_days"].astype("Int64")
    profiles["as_of"] = pd.to_datetime(profiles["as_of"]).dt.date
    wh.create_from("profiles", profiles)
    wh.create_from("stores", STORES.copy())
    tx = TRANSACTIONS.copy()
    tx["ordered_at"] = pd.to_datetime([_ago(d) for d in tx.pop("_days")], utc=True)
    tx["currency"] = "EUR"
    tx["quantity"] = 1
    tx["store_id"] = pd.Series([None] * len(tx), dtype="string")
    wh.upsert("transactions", ibis.memtable(tx))  # through the write path: rollups stay current
    ev = EVENTS.copy()
    ev["occurred_at"] = pd.to_datetime([_ago(d) for d in ev.pop("_days")], utc=True)
    ev["channel"] = "email"
    ev["campaign_id"] = pd.Series([None] * len(ev), dtype="string")
    wh.upsert("events", ibis.memtable(ev))
    return ws
