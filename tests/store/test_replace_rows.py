"""``Warehouse.replace_rows``: a match value that is a list replaces the rows of every value in one write."""

from __future__ import annotations

from datetime import date

import ibis
import pandas as pd
import pytest

from micromarketing import Workspace

D1, D2 = date(2024, 6, 1), date(2024, 7, 1)


def _rows(pairs: list[tuple[str | None, date, str]]) -> ibis.Table:
    return ibis.memtable(
        pd.DataFrame({"segment": [p[0] for p in pairs], "as_of": [p[1] for p in pairs],
                      "customer_id": [p[2] for p in pairs]}),
        schema={"segment": "string", "as_of": "date", "customer_id": "string"},
    )


def _stored(ws: Workspace) -> set[tuple]:
    t = ws.table("groups").to_pyarrow().to_pylist()
    return {(r["segment"], r["as_of"], r["customer_id"]) for r in t}


@pytest.fixture
def ws(tmp_path):
    with Workspace.init(tmp_path / "ws") as workspace:
        workspace.warehouse.replace_rows(
            "groups",
            _rows([("a", D1, "c1"), ("a", D2, "c2"), ("b", D1, "c3"), ("c", D1, "c4"), (None, D1, "c5")]),
            {},
        )
        yield workspace


def test_a_list_replaces_the_rows_of_each_value_and_keeps_the_others(ws):
    count = ws.warehouse.replace_rows(
        "groups", _rows([("a", D1, "n1"), ("b", D1, "n2"), ("b", D1, "n3")]),
        {"segment": ["a", "b"], "as_of": D1},
    )
    assert count == 3
    # a and b on D1 replaced (b's c3 and a's c1 gone); a on D2, c and the NULL segment kept
    assert _stored(ws) == {
        ("a", D1, "n1"), ("b", D1, "n2"), ("b", D1, "n3"), ("a", D2, "c2"), ("c", D1, "c4"), (None, D1, "c5")
    }


def test_a_value_that_is_not_a_list_still_means_equal(ws):
    assert ws.warehouse.replace_rows("groups", _rows([("c", D1, "n4")]), {"segment": "c", "as_of": D1}) == 1
    assert ("c", D1, "c4") not in _stored(ws) and ("c", D1, "n4") in _stored(ws)
    assert len(_stored(ws)) == 5


def test_an_empty_list_matches_no_row(ws):
    before = _stored(ws)
    ws.warehouse.replace_rows("groups", _rows([("d", D1, "n5")]), {"segment": []})
    assert _stored(ws) == before | {("d", D1, "n5")}
