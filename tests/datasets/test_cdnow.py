"""The CDNOW loader: counts from the papers and row-by-row agreement with the shipped text files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from micromarketing.datasets import write_cdnow
from micromarketing.datasets.cdnow import cdnow_source
from micromarketing.errors import DataError


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cdnow(tmp_path_factory.mktemp("cdnow-master"), "master")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"order_id": str, "customer_id": str})


def test_master_counts_and_columns(master: Path) -> None:
    tx = _read(master)
    assert list(tx.columns) == ["order_id", "line_no", "customer_id", "ordered_at", "quantity", "amount",
                                "currency", "channel"]
    assert len(tx) == 69_659
    assert tx["customer_id"].nunique() == 23_570
    assert tx["order_id"].is_unique
    assert (tx["line_no"] == 1).all() and (tx["currency"] == "USD").all()
    assert (tx["channel"] == "online").all()
    assert (tx["amount"] >= 0).all() and (tx["quantity"] >= 1).all()
    ordered = pd.to_datetime(tx["ordered_at"], utc=True)
    assert ordered.min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert ordered.max() == pd.Timestamp("1998-06-30", tz="UTC")
    customers = pd.read_csv(master.parent / "customers.csv", dtype=str)
    assert list(customers.columns) == ["customer_id"]
    assert set(customers["customer_id"]) == set(tx["customer_id"]) and len(customers) == 23_570


def test_master_rows_match_raw_text(master: Path) -> None:
    raw = cdnow_source("master").read_text().splitlines()
    tx = _read(master)
    for i in (0, 1, 2, 1_000, 40_000, len(tx) - 1):  # rows 1 and 2: customer 00002 twice on one day
        cust, day, cds, dollars = raw[i + 1].split()
        row = tx.iloc[i]
        assert row["customer_id"] == cust
        assert row["ordered_at"] == f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00:00Z"
        assert row["quantity"] == int(cds) and row["amount"] == pytest.approx(float(dollars))
        assert row["order_id"].startswith(f"{cust}-{day}-")
    assert list(tx["order_id"].iloc[1:3]) == ["00002-19970112-1", "00002-19970112-2"]


def test_sample_counts_use_master_ids(tmp_path: Path) -> None:
    path = write_cdnow(tmp_path, which="sample")
    tx = _read(path)
    assert len(tx) == 6_919 and tx["customer_id"].nunique() == 2_357
    first = cdnow_source("sample").read_text().splitlines()[0].split()
    assert tx.iloc[0]["customer_id"] == first[0] and tx.iloc[0]["amount"] == pytest.approx(float(first[4]))
    assert len(pd.read_csv(tmp_path / "customers.csv")) == 2_357


def test_missing_distribution_is_a_data_error() -> None:
    with pytest.raises(DataError, match="not installed"):
        cdnow_source("master", distribution="no-such-distribution-mm")
    with pytest.raises(DataError, match="unknown CDNOW file"):
        cdnow_source("other")  # type: ignore[arg-type]
