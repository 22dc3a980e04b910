"""Snapshot tests: the SQL each rule compiles to, per dialect, is kept in snapshots/.

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/segments/test_sql_snapshots.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mm_segments_population import AS_OF

from micromarketing.segments import Segments

SNAPSHOTS = Path(__file__).with_name("snapshots")
RULES = {
    "profile_fields": "rfm_segment in ('champions', 'loyal') and recency_days <= 30 and not frequency < 2",
    "customer_fields": "city in ('Lyon', 'Paris') and postcode starts_with '75' and email is not null",
    "dates": "days_since(last_order_at) > 90 and last_order_at >= '2023-01-01'",
    "geo": "within_km(store('S012'), 5) or within_km(48.85, 2.35, 3)",
    "behaviour": (
        "bought(category='running', within_days=90) and events(type='email_click', within_days=30) >= 2"
    ),
    "arithmetic": "monetary / frequency between 50 and 150.5",
}


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_compiled_sql_matches_snapshot(shared_ws, name, dialect):
    if dialect == "spark":
        pytest.importorskip("pyspark", reason="pyspark is not installed")
    sql = Segments(shared_ws).sql(rule=RULES[name], dialect=dialect, as_of=AS_OF) + "\n"
    path = SNAPSHOTS / f"{name}.{dialect}.sql"
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(sql)
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(f"wrote missing snapshot {path.name}; review and commit it")
    assert sql == path.read_text(), f"compiled SQL changed; review and regenerate {path.name}"
