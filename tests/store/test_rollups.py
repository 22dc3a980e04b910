"""The maintained per-customer rollups always equal their definition over the stored rows."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ibis
import ibis.expr.operations as ops
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing import Workspace
from micromarketing.store.rollups import ROLLUPS
from micromarketing.store.schema import EVENT_TYPES

START = datetime(2024, 1, 1, tzinfo=UTC)


def _rows(table: ibis.Table) -> list[tuple]:
    frame = table.to_pandas()
    out = []
    for row in frame.itertuples(index=False):
        out.append(tuple(None if (isinstance(v, float) and math.isnan(v)) or v is pd.NaT else v for v in row))
    return sorted(out, key=repr)


def _assert_maintained(ws: Workspace) -> None:
    for rollup in ROLLUPS.values():
        stored = ws.table(rollup.name)
        inputs = [ws.table(name) for name in rollup.inputs]
        expected = rollup.build(ws.table(rollup.source), *inputs).select(*stored.columns)
        assert _rows(stored) == _rows(expected), rollup.name


def _lines(rows: list[tuple[str, int, str, int, float, str | None]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {
                "order_id": [r[0] for r in rows],
                "line_no": [r[1] for r in rows],
                "customer_id": [r[2] for r in rows],
                "ordered_at": [START + timedelta(days=r[3]) for r in rows],
                "amount": [r[4] for r in rows],
                "category": [r[5] for r in rows],
                "currency": ["EUR"] * len(rows),
            }
        )
    )


def _events(rows: list[tuple[str, str, str, str | None, int]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {
                "event_id": [r[0] for r in rows],
                "customer_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "channel": pd.Series([r[3] for r in rows], dtype="object"),
                "occurred_at": [START + timedelta(days=r[4]) for r in rows],
            }
        )
    )


customers = st.sampled_from(["a", "b", "c"])
line_batches = st.lists(
    st.tuples(
        st.sampled_from(["o1", "o2", "o3", "o4"]),
        st.integers(1, 3),
        customers,
        st.integers(0, 30),
        st.integers(0, 5000).map(lambda cents: cents / 100),
        st.sampled_from(["shoes", "socks", None]),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda r: (r[0], r[1]),  # ingest keeps one row per key within a file
)
event_batches = st.lists(
    st.tuples(
        st.sampled_from(["e1", "e2", "e3", "e4", "e5"]),
        customers,
        st.sampled_from(EVENT_TYPES),
        st.sampled_from([None, "email", "web", "sms"]),
        st.integers(0, 30),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda r: r[0],
)
places = st.tuples(st.floats(43.0, 50.0), st.floats(-1.0, 7.0))
customer_batches = st.lists(
    st.tuples(customers, st.one_of(st.just((None, None)), places)),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r[0],
)
store_batches = st.lists(
    st.tuples(st.sampled_from(["S1", "S2"]), places),
    min_size=1,
    max_size=2,
    unique_by=lambda r: r[0],
)


def _customers(rows: list[tuple[str, tuple[float | None, float | None]]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {
                "customer_id": [r[0] for r in rows],
                "lat": pd.Series([r[1][0] for r in rows], dtype="float64"),
                "lon": pd.Series([r[1][1] for r in rows], dtype="float64"),
            }
        )
    )


def _stores(rows: list[tuple[str, tuple[float, float]]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {"store_id": [r[0] for r in rows], "lat": [r[1][0] for r in rows], "lon": [r[1][1] for r in rows]}
        )
    )


WRITERS = {"transactions": _lines, "events": _events, "customers": _customers, "stores": _stores}
writes = st.lists(
    st.one_of(
        line_batches.map(lambda b: ("transactions", b)),
        event_batches.map(lambda b: ("events", b)),
        customer_batches.map(lambda b: ("customers", b)),
        store_batches.map(lambda b: ("stores", b)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=writes)
def test_rollups_equal_their_definition_after_any_sequence_of_writes(writes):
    # Writes replace rows by key, move an order line or an event to another customer, add first
    # lines that change which line heads an order, move customers and stores: every customer
    # touched must be refreshed, and a store write must refresh everyone.
    with tempfile.TemporaryDirectory() as tmp, Workspace.init(Path(tmp) / "ws") as ws:
        for table, batch in writes:
            ws.warehouse.upsert(table, WRITERS[table](batch))
            _assert_maintained(ws)


@pytest.fixture
def ws(tmp_path):
    with Workspace.init(tmp_path / "ws") as workspace:
        workspace.warehouse.upsert(
            "transactions",
            _lines(
                [
                    ("o1", 1, "a", 0, 10.0, "shoes"),
                    ("o1", 2, "a", 0, 25.0, "socks"),
                    ("o2", 1, "a", 20, 5.0, "shoes"),
                    ("o3", 1, "b", 10, 7.0, None),
                ]
            ),
        )
        workspace.warehouse.upsert(
            "events",
            _events(
                [
                    ("e1", "a", "email_open", None, 1),
                    ("e2", "a", "email_click", "email", 21),
                    ("e3", "a", "page_view", None, 2),
                    ("e4", "b", "unsubscribe", None, 3),
                ]
            ),
        )
        yield workspace


def test_orders_and_engagement_rollups_hold_the_expected_figures(ws):
    orders = ws.table("customer_orders").to_pandas().set_index("customer_id")
    assert orders.loc["a", "orders"] == 2
    assert orders.loc["a", "spend"] == pytest.approx(40.0)
    assert orders.loc["a", "top_category"] == "socks"
    assert orders.loc["b", "top_category"] is None  # uncategorised spend never wins
    engagement = ws.table("customer_engagement").to_pandas().set_index("customer_id")
    assert engagement.loc["a", "preferred_channel"] == "email"
    assert engagement.loc["a", "engagement_events"] == 3
    assert engagement.loc["b", "preferred_channel"] is None  # an unsubscribe shows no channel
    assert engagement.loc["b", "engagement_events"] == 0
    assert engagement.loc["b", "last_event_at"] == START + timedelta(days=3)


def test_a_cutoff_after_every_row_reads_the_maintained_table_else_the_source(ws):
    after_all = START + timedelta(days=31)
    assert isinstance(ws.warehouse.rollup("customer_orders", before=after_all).op(), ops.DatabaseTable)
    earlier = START + timedelta(days=15)  # o2 (day 20) and e2 (day 21) do not count yet
    orders = ws.warehouse.rollup("customer_orders", before=earlier)
    assert not isinstance(orders.op(), ops.DatabaseTable)
    assert orders.filter(orders.customer_id == "a").orders.execute().tolist() == [1]
    engagement = ws.warehouse.rollup("customer_engagement", before=earlier)
    assert engagement.filter(engagement.customer_id == "a").engagement_events.execute().tolist() == [2]
    # The stored rows themselves sit exactly at their day's midnight: "before" is strict.
    on_the_day = ws.warehouse.rollup("customer_orders", before=START + timedelta(days=20))
    assert on_the_day.filter(on_the_day.customer_id == "a").orders.execute().tolist() == [1]


def test_a_failed_write_changes_neither_the_table_nor_its_rollups(ws):
    before = _rows(ws.table("customer_orders")), _rows(ws.table("transactions"))
    no_key = _lines([("o9", 1, "c", 5, 1.0, "shoes"), (None, 1, "a", 6, 2.0, "shoes")])
    with pytest.raises(Exception, match="(?i)NOT NULL"):  # the insert fails after `a` was noted
        ws.warehouse.upsert("transactions", no_key)
    assert (_rows(ws.table("customer_orders")), _rows(ws.table("transactions"))) == before
    ws.warehouse.upsert("transactions", _lines([("o9", 1, "c", 5, 1.0, "shoes")]))  # still writable
    _assert_maintained(ws)


def test_a_workspace_without_rollups_gains_them_when_opened(tmp_path, ws):
    ws.warehouse.raw_sql("DROP TABLE customer_orders")
    root = ws.root
    ws.close()
    with Workspace.open(root) as reopened:
        assert reopened.table("customer_orders").count().execute() == 2
        _assert_maintained(reopened)


def test_a_rollup_built_by_another_definition_is_rebuilt_when_opened(ws):
    ws.warehouse.raw_sql("UPDATE customer_orders SET orders = 99")  # what an older definition left
    ws.warehouse.raw_sql("UPDATE rollup_definitions SET sql_sha256 = 'older' WHERE name = 'customer_orders'")
    root = ws.root
    ws.close()
    with Workspace.open(root) as reopened:
        assert reopened.table("customer_orders").orders.max().execute() == 2
        _assert_maintained(reopened)
    with Workspace.open(root) as again:  # an up-to-date rollup is left alone
        again.warehouse.raw_sql("UPDATE customer_orders SET orders = 99")
        again.close()
        assert again.table("customer_orders").orders.max().execute() == 99
