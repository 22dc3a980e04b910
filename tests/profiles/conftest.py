"""A tiny hand-checkable population for profile tests, written straight into a fresh workspace."""

from __future__ import annotations

from datetime import date

import ibis
import pandas as pd
import pytest

from micromarketing import Workspace

AS_OF = date(2024, 6, 15)


@pytest.fixture
def small_ws(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    w = ws.warehouse
    w.upsert(
        "customers",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": ["a", "b", "c", "d"],
                    "birth_date": [date(1990, 6, 15), date(1980, 6, 16), None, date(2001, 1, 1)],
                    "signup_date": [date(2020, 1, 1), date(2021, 1, 1), date(2024, 6, 1), None],
                    "lat": [48.8566, 45.7640, None, 43.6047],
                    "lon": [2.3522, 4.8357, None, 1.4442],
                }
            )
        ),
    )
    w.upsert(
        "stores",
        ibis.memtable(
            pd.DataFrame({"store_id": ["PAR", "LYO"], "lat": [48.8606, 45.7578], "lon": [2.3376, 4.8320]})
        ),
    )
    w.upsert(
        "transactions",
        ibis.memtable(
            pd.DataFrame(
                {
                    "order_id": ["o1", "o1", "o2", "o3", "o4", "late"],
                    "line_no": [1, 2, 1, 1, 1, 1],
                    "customer_id": ["a", "a", "a", "b", "d", "b"],
                    "ordered_at": pd.to_datetime(
                        [
                            "2024-01-01T10:00Z",
                            "2024-01-01T10:00Z",
                            "2024-06-14T23:59Z",
                            "2023-02-01T00:00Z",
                            "2024-05-01T12:00Z",
                            "2024-06-15T00:00Z",  # on the as-of date: must not count
                        ]
                    ),
                    "category": ["shoes", "socks", "socks", "shoes", None, "shoes"],
                    "amount": [10.0, 5.0, 20.0, 7.0, 100.0, 999.0],
                    "currency": ["EUR"] * 6,
                    "quantity": [1] * 6,
                }
            )
        ),
    )
    w.upsert(
        "events",
        ibis.memtable(
            pd.DataFrame(
                {
                    "event_id": ["e1", "e2", "e3", "e4", "e5"],
                    "customer_id": ["a", "a", "a", "b", "b"],
                    "event_type": ["email_open", "email_click", "page_view", "page_view", "sms_click"],
                    "channel": [None, None, None, None, None],
                    "occurred_at": pd.to_datetime(["2024-01-01T00:00Z"] * 5),
                }
            )
        ),
    )
    yield ws
    ws.close()
