"""The warehouse keeps exactly one ``order_head`` line per order through every kind of write."""

from __future__ import annotations

import ibis
import pandas as pd

from micromarketing import Workspace


def _lines(rows: list[tuple[str, int, float]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame(
            {
                "order_id": [r[0] for r in rows],
                "line_no": [r[1] for r in rows],
                "customer_id": ["c"] * len(rows),
                "ordered_at": pd.to_datetime(["2024-01-01T00:00Z"] * len(rows)),
                "amount": [r[2] for r in rows],
                "currency": ["EUR"] * len(rows),
            }
        )
    )


def _heads(ws: Workspace) -> dict[tuple[str, int], bool]:
    t = ws.table("transactions").select("order_id", "line_no", "order_head").to_pandas()
    return {(r.order_id, int(r.line_no)): bool(r.order_head) for r in t.itertuples()}


def test_order_heads_follow_inserts_replacements_and_new_first_lines(tmp_path):
    with Workspace.init(tmp_path / "ws") as ws:
        ws.warehouse.upsert("transactions", _lines([("o1", 2, 1.0), ("o1", 3, 1.0), ("o2", 1, 5.0)]))
        assert _heads(ws) == {("o1", 2): True, ("o1", 3): False, ("o2", 1): True}

        ws.warehouse.upsert("transactions", _lines([("o1", 3, 9.0)]))  # replace a line: flags stay
        assert _heads(ws) == {("o1", 2): True, ("o1", 3): False, ("o2", 1): True}

        ws.warehouse.upsert("transactions", _lines([("o1", 1, 4.0)]))  # a new first line takes over
        assert _heads(ws) == {("o1", 1): True, ("o1", 2): False, ("o1", 3): False, ("o2", 1): True}

        heads = ws.table("transactions").order_head.cast("int64").sum().execute()
        orders = ws.table("transactions").order_id.nunique().execute()
        assert heads == orders == 2
