from __future__ import annotations

import math
from datetime import date

import pytest

from micromarketing.errors import DataError
from micromarketing.exprs import haversine_km
from micromarketing.profiles.build import RFM_GRID, build_profiles

AS_OF = date(2024, 6, 15)  # the fixture population is built around this date


def _profiles(ws):
    build_profiles(ws, as_of=AS_OF)
    return ws.table("profiles").to_pandas().set_index("customer_id").sort_index()


def test_recency_frequency_monetary_count_only_orders_before_as_of(small_ws):
    p = _profiles(small_ws)
    assert p.loc["a", "frequency"] == 2  # o1 has two lines but is one order
    assert p.loc["a", "monetary"] == pytest.approx(35.0)
    assert p.loc["a", "avg_order_value"] == pytest.approx(17.5)
    assert p.loc["a", "recency_days"] == 1
    assert p.loc["b", "frequency"] == 1  # the order on the as-of date is excluded
    assert p.loc["b", "monetary"] == pytest.approx(7.0)
    assert p.loc["b", "recency_days"] == (AS_OF - p.loc["b", "last_order_at"].date()).days


def test_customer_without_orders_is_a_prospect(small_ws):
    p = _profiles(small_ws)
    assert p.loc["c", "frequency"] == 0
    assert p.loc["c", "rfm_segment"] == "prospects"
    assert math.isnan(p.loc["c", "r_score"])
    assert p.loc["c", "tenure_days"] == 14


def test_age_counts_completed_years(small_ws):
    p = _profiles(small_ws)
    assert p.loc["a", "age"] == 34  # birthday on the as-of date
    assert p.loc["b", "age"] == 43  # birthday tomorrow
    assert p.loc["a", "age_band"] == "25-34"
    assert p.loc["b", "age_band"] == "35-44"
    assert p.loc["d", "age_band"] == "18-24"


def test_top_category_preferred_channel_and_nearest_store(small_ws):
    p = _profiles(small_ws)
    assert p.loc["a", "top_category"] == "socks"  # 25 on socks vs 10 on shoes
    assert p.loc["a", "preferred_channel"] == "email"  # two email events vs one page view
    assert p.loc["a", "nearest_store_id"] == "PAR"
    assert p.loc["b", "nearest_store_id"] == "LYO"
    expected = haversine_km(48.8566, 2.3522, 48.8606, 2.3376).execute()
    assert p.loc["a", "nearest_store_km"] == pytest.approx(expected)
    assert 1.0 < expected < 1.3  # Hôtel de Ville to the Louvre is about 1.15 km


def test_haversine_matches_known_distance():
    paris_lyon = haversine_km(48.8566, 2.3522, 45.7640, 4.8357).execute()
    assert paris_lyon == pytest.approx(391.5, abs=1.0)


def test_rfm_scores_and_segments_are_consistent(small_ws):
    p = _profiles(small_ws)
    buyers = p[p.frequency > 0]
    assert buyers[["r_score", "f_score", "m_score"]].isin([1, 2, 3, 4, 5]).all().all()
    assert p.loc["a", "r_score"] == 5  # most recent buyer
    for cid, row in buyers.iterrows():
        fm = math.ceil((row.f_score + row.m_score) / 2)
        names = [n for n, rs, fms in RFM_GRID if row.r_score in rs and fm in fms]
        assert names == [row.rfm_segment], cid
        assert row.rfm_score == f"{int(row.r_score)}{int(row.f_score)}{int(row.m_score)}"


def test_rfm_grid_covers_every_cell_once():
    cells = [(r, fm) for _, rs, fms in RFM_GRID for r in rs for fm in fms]
    assert sorted(cells) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]


def test_profile_is_reproducible_and_default_as_of_is_after_last_order(small_ws):
    first = _profiles(small_ws)
    second = _profiles(small_ws)
    assert first.equals(second)
    result = build_profiles(small_ws)
    assert str(result.as_of) == "2024-06-16"
    assert result.customers == 4
    assert result.with_orders == 3


def test_mixed_currencies_are_refused(small_ws):
    import ibis
    import pandas as pd

    small_ws.warehouse.upsert(
        "transactions",
        ibis.memtable(
            pd.DataFrame(
                {
                    "order_id": ["usd"],
                    "line_no": [1],
                    "customer_id": ["a"],
                    "ordered_at": pd.to_datetime(["2024-01-02T00:00Z"]),
                    "amount": [1.0],
                    "currency": ["USD"],
                }
            )
        ),
    )
    with pytest.raises(DataError, match="mix currencies EUR, USD"):
        build_profiles(small_ws, as_of=AS_OF)


def test_ties_are_broken_the_same_way_every_time(small_ws):
    p = _profiles(small_ws)
    # b has one page view (web) and one SMS click: a tie goes to the alphabetically first channel.
    assert p.loc["b", "preferred_channel"] == "sms"
