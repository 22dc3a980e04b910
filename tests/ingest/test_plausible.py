"""Issue #12 item 2: implausible values are quarantined (field + bound), so later commands never crash."""

from __future__ import annotations

import csv
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mm_strategies import TxFile, implausible_tx, valid_tx

from micromarketing.errors import DataError, InvalidInputError
from micromarketing.workspace import Workspace

HEADER = "order_id,customer_id,ordered_at,amount,currency\n"


def _quarantine(path: Path | None) -> dict[int, dict[str, str]]:
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {int(r["row"]): r for r in csv.DictReader(fh)}


def test_issue_examples_are_quarantined_with_the_bound(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        HEADER
        + "O1,C1,2024-01-01,5,EUR\n"
        + "O2,C1,2024-03-01,6,EUR\n"
        + "O3,C1,9999-12-31T23:59:59+14:00,1,EUR\n"
        + "O4,C1,2099-01-01,1,EUR\n"
        + "O5,C1,0001-01-01,1,EUR\n"
        + "O6,C1,2024-02-01,1e300,EUR\n",
        encoding="utf-8",
    )
    workspace.ingest("customers", _customers(tmp_path, "C1"))
    result = workspace.ingest("transactions", path)
    assert (result.accepted, result.rejected) == (2, 4)
    got = _quarantine(result.quarantine_path)
    fields = {n: got[n]["field"] for n in got}
    assert fields == {3: "ordered_at", 4: "ordered_at", 5: "ordered_at", 6: "amount"}
    assert "settings.ingest.max_future 1d" in got[3]["reason"] and got[3]["reason"].startswith("after ")
    assert "settings.ingest.max_future" in got[4]["reason"]
    assert got[5]["reason"] == "before 1900-01-01 (settings.ingest.min_date)"
    assert got[6]["reason"] == "above 1e+09 (settings.ingest.max_amount)"
    # Later commands work and the default as-of follows the plausible data only.
    profile = workspace.profile()
    assert profile.as_of == date(2024, 3, 2)
    workspace.clv.fit()


def test_dates_of_customers_have_the_same_bounds(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "customer_id,birth_date,signup_date\nA,1980-01-01,2020-01-01\nB,1850-01-01,\nC,,2999-01-01\n",
        encoding="utf-8",
    )
    result = workspace.ingest("customers", path)
    got = _quarantine(result.quarantine_path)
    assert result.accepted == 1
    assert (got[2]["field"], got[3]["field"]) == ("birth_date", "signup_date")


def test_prices_are_bounded_too(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("product_id,category,price\nP1,x,10\nP2,x,2e9\n", encoding="utf-8")
    result = workspace.ingest("products", path)
    assert result.reasons == {"price: above 1e+09 (settings.ingest.max_amount)": 1}


def test_bounds_are_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROMARKETING_INGEST__MAX_AMOUNT", "100")
    monkeypatch.setenv("MICROMARKETING_INGEST__MIN_DATE", "2020-01-01")
    monkeypatch.setenv("MICROMARKETING_INGEST__MAX_FUTURE", "36500d")
    path = tmp_path / "tx.csv"
    path.write_text(
        HEADER + "O1,C1,2019-12-31,5,EUR\nO2,C1,2024-01-01,500,EUR\nO3,C1,2099-01-01,5,EUR\n",
        encoding="utf-8",
    )
    with Workspace.init(tmp_path / "ws") as ws:
        result = ws.ingest("transactions", path)
    assert result.accepted == 1
    assert set(result.reasons) == {
        "ordered_at: before 2020-01-01 (settings.ingest.min_date)",
        "amount: above 100 (settings.ingest.max_amount)",
    }


def test_as_of_far_in_the_past_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(HEADER + "O1,C1,2024-01-01,5,EUR\nO2,C1,2024-02-01,5,EUR\n", encoding="utf-8")
    workspace.ingest("transactions", path)
    floor = "--as-of 0001-01-02: before settings.ingest.min_date 1900-01-01"
    with pytest.raises(InvalidInputError, match=floor):
        workspace.profile(as_of=date(1, 1, 2))
    with pytest.raises(InvalidInputError, match="before settings.ingest.min_date"):
        workspace.clv.fit(as_of=date(1, 1, 2))
    with pytest.raises(DataError, match="no transactions before 2023-01-01 .*earliest is dated 2024-01-01"):
        workspace.profile(as_of=date(2023, 1, 1))


def test_a_legacy_row_beyond_2262_does_not_overflow_the_default_as_of(workspace: Workspace) -> None:
    import ibis

    from micromarketing.store.schema import TRANSACTIONS

    row = {c: None for c in TRANSACTIONS.column_names}
    row.update(order_id="O1", line_no=1, customer_id="C1", amount=1.0, currency="EUR", quantity=1)
    types = {"timestamp": "timestamp('UTC')", "float": "float64", "int": "int64"}
    schema = {c.name: types.get(c.type, c.type) for c in TRANSACTIONS.columns}
    table = ibis.memtable([row], schema=schema).mutate(
        ordered_at=ibis.literal("9999-12-31 09:59:59").cast("timestamp('UTC')")
    )
    workspace.warehouse.upsert("transactions", table.select(*TRANSACTIONS.column_names))
    with pytest.raises(DataError, match="last stored order is dated 9999-12-31"):
        workspace.profile()


def _customers(tmp_path: Path, *ids: str) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text("customer_id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return path


# One ingest and one profile per example; no shrinking (each example costs about a second).
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    good=st.lists(valid_tx("EUR"), min_size=1, max_size=4),
    bad=st.lists(implausible_tx("EUR"), min_size=1, max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_generated_implausible_rows_are_quarantined_and_profile_runs(good, bad, seed) -> None:  # type: ignore[no-untyped-def]
    rows = good + bad
    seed.shuffle(rows)
    for number, row in enumerate(rows, start=1):  # distinct keys: only the bad rows are rejected
        row.cells["order_id"], row.cells["line_no"] = f"O{number}", "1"
    with tempfile.TemporaryDirectory() as tmp:
        path = TxFile(rows=rows, fmt="csv").write(Path(tmp))
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            result = ws.ingest("transactions", path)
            got = _quarantine(result.quarantine_path)
            want = {n: r.bad_field for n, r in enumerate(rows, start=1) if r.bad_field}
            assert {n: r["field"] for n, r in got.items()} == want
            for number, record in got.items():
                assert "settings.ingest." in record["reason"], (number, record)
            assert result.accepted == len(good)
            profile = ws.profile()  # nothing stored can overflow the default as-of
            assert profile.as_of <= date.today() + timedelta(days=2)
        finally:
            ws.close()
