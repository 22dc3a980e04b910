"""Ingest on small hand-written files: types, checks, duplicates, odd bytes, formats, idempotence."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import h3
import pandas as pd
import pytest
from sqlalchemy import select

from micromarketing.errors import IngestError
from micromarketing.ingest import MAX_TEXT, ingest_file
from micromarketing.store.models import IngestRun
from micromarketing.workspace import Workspace

TX_HEADER = "order_id,line_no,customer_id,ordered_at,amount,currency,channel\n"


def quarantine(result) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    with open(result.quarantine_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rows(ws: Workspace, table: str, order: str) -> list[dict]:
    return ws.table(table).order_by(order).to_pandas().to_dict(orient="records")


def test_transactions_types_checks_and_quarantine(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        TX_HEADER
        + "O1,1,C1,2024-01-02T10:00:00+02:00, 10.5 ,usd,online\n"  # offset -> UTC, trimmed, upper-cased
        + "O1,2,C1,2024-01-02,abc,USD,online\n"  # amount not a number
        + "O2,1,C2,2024-01-03,-1,USD,online\n"  # negative amount
        + "O3,1,C3,2024-01-03,5,XXX,online\n"  # unknown currency
        + "O4,1,C4,2024-01-03,5,USD,shop\n"  # channel not allowed
        + "O5,1.5,C5,2024-01-03,5,EUR,app\n"  # line_no not an integer (DuckDB would round it)
        + "O6,,,2024-01-03,5,EUR,app\n"  # required customer_id missing; line_no defaults to 1
        + "O7,,C7,2024-01-03 08:30:00,7,USD,\n"  # no zone -> UTC; empty optional channel
        + "O8,1,C8,yesterday,7,EUR,app\n"  # bad timestamp
        + "O9,1,C9,2024-01-03,inf,EUR,app\n",  # not finite
        encoding="utf-8",
    )
    result = ingest_file(workspace, "transactions", path)
    assert (result.rows_read, result.accepted, result.rejected) == (10, 2, 8)
    assert result.reasons == {
        "amount: not a number": 2,
        "amount: negative value": 1,
        "currency: currency not in settings.ingest.currencies": 1,
        "channel: not one of online, store, app, phone": 1,
        "line_no: not an integer": 1,
        "customer_id: required value missing": 1,
        "ordered_at: not an ISO 8601 timestamp": 1,
    }
    got = rows(workspace, "transactions", "order_id")
    assert [r["order_id"] for r in got] == ["O1", "O7"]
    o1, o7 = got
    assert o1["ordered_at"].to_pydatetime() == datetime(2024, 1, 2, 8, 0, tzinfo=UTC)
    assert (o1["amount"], o1["currency"], o1["quantity"]) == (10.5, "USD", 1)
    assert o7["ordered_at"].to_pydatetime() == datetime(2024, 1, 3, 8, 30, tzinfo=UTC)
    assert (o7["line_no"], o7["channel"]) == (1, None)
    q = quarantine(result)
    assert [(r["row"], r["field"]) for r in q] == [
        ("2", "amount"),
        ("3", "amount"),
        ("4", "currency"),
        ("5", "channel"),
        ("6", "line_no"),
        ("7", "customer_id"),
        ("9", "ordered_at"),
        ("10", "amount"),
    ]
    assert q[0]["file"] == str(path) and q[0]["amount"] == "abc" and q[4]["line_no"] == "1.5"
    assert result.quarantine_path.parent == workspace.root / "quarantine"


def test_duplicate_keys_keep_last_valid_occurrence(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        TX_HEADER
        + "O1,1,C1,2024-01-01,1,USD,app\n"
        + "O1,1,C1,2024-01-01,2,USD,app\n"
        + "O1,01,C1,2024-01-01,3,USD,app\n"  # same key once parsed (line_no 1)
        + "O1,1,C1,2024-01-01,-4,USD,app\n",  # invalid: does not supersede the valid row 3
        encoding="utf-8",
    )
    result = ingest_file(workspace, "transactions", path)
    assert (result.accepted, result.rejected) == (1, 3)
    assert rows(workspace, "transactions", "order_id")[0]["amount"] == 3.0
    q = quarantine(result)
    assert [(r["row"], r["reason"]) for r in q] == [
        ("1", "duplicate key, superseded by row 3"),
        ("2", "duplicate key, superseded by row 3"),
        ("4", "negative value"),
    ]
    assert q[0]["field"] == "order_id+line_no"


def test_reingest_changes_nothing_and_records_runs(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(TX_HEADER + "O1,1,C1,2024-01-01,1,USD,app\nO2,1,C2,2024-01-01,2,USD,app\nO3,x,C,,,,\n")
    first = ingest_file(workspace, "transactions", path)
    before = workspace.table("transactions").order_by("order_id").to_pandas()
    second = ingest_file(workspace, "transactions", path)
    after = workspace.table("transactions").order_by("order_id").to_pandas()
    pd.testing.assert_frame_equal(before, after)
    assert first.accepted == second.accepted == 2
    assert first.quarantine_path == second.quarantine_path
    with workspace.ops.session() as session:
        runs = session.scalars(select(IngestRun).order_by(IngestRun.id)).all()
        assert [(r.kind, r.accepted, r.rejected) for r in runs] == [("transactions", 2, 1)] * 2
        assert runs[0].sha256 == first.sha256 and len(first.sha256) == 64
        assert runs[0].finished_at is not None


def test_customers_checks_and_h3(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(
        "customer_id,email,phone,lat,lon,country,birth_date,h3_cell\n"
        "A, a@b.co ,+1 (650) 555-1212,48.85,2.35,fr,1990-01-02,ignored\n"
        "B,,,,,,,\n"
        "C,not-an-email,,,,,,\n"
        "D,,12,,,,,\n"
        "E,,,91,0,,,\n"
        "F,,,0,181,,,\n"
        "G,,,,,FRA,,\n"
        "H,,,,,,1990-13-01,\n"
        "I,,,,,,1990-01-02 10:00,\n",
        encoding="utf-8",
    )
    result = ingest_file(workspace, "customers", path)
    assert (result.accepted, result.rejected) == (2, 7)
    assert set(result.reasons) == {
        "email: not an email address",
        "phone: not a phone number (7-15 digits, optional +)",
        "lat: latitude outside [-90, 90]",
        "lon: longitude outside [-180, 180]",
        "country: not an ISO-3166 alpha-2 country code",
        "birth_date: not a date (YYYY-MM-DD)",
    }
    assert any("h3_cell" in w for w in result.warnings)
    a, b = rows(workspace, "customers", "customer_id")
    assert (a["email"], a["phone"], a["country"]) == ("a@b.co", "+16505551212", "FR")
    assert a["h3_cell"] == h3.latlng_to_cell(48.85, 2.35, 7)
    assert pd.Timestamp(a["birth_date"]).date() == date(1990, 1, 2)
    assert b["h3_cell"] is None and b["email"] is None


def test_over_long_string_rejected(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(f"product_id,category,name\nP1,toys,{'x' * (MAX_TEXT + 1)}\nP2,toys,{'y' * MAX_TEXT}\n")
    result = ingest_file(workspace, "products", path)
    assert result.reasons == {f"name: longer than {MAX_TEXT} characters": 1}
    assert rows(workspace, "products", "product_id")[0]["product_id"] == "P2"
    assert rows(workspace, "products", "product_id")[0]["repeatable"] is True  # the column default


def test_missing_required_column_fails_the_file(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\nO1,C1,2024-01-01,1\n")
    with pytest.raises(IngestError, match=r"tx\.csv.*missing required column currency"):
        ingest_file(workspace, "transactions", path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty"),
        ("bad.txt", b"a,b\n", "unsupported file type"),
        ("badheader.csv", b"customer_id,\xff\xfe\n1,2\n", "not valid UTF-8"),
        ("dup.csv", b"customer_id,Customer_ID\n1,2\n", "appears twice"),
        ("broken.parquet", b"not parquet at all", "cannot be read"),
    ],
)
def test_unreadable_files_raise_ingest_error(
    workspace: Workspace, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message) as info:
        ingest_file(workspace, "customers", path)
    assert name in str(info.value)


def test_unknown_kind_and_missing_file(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown kind 'orders'"):
        ingest_file(workspace, "orders", tmp_path / "x.csv")
    with pytest.raises(IngestError, match="no such file"):
        ingest_file(workspace, "customers", tmp_path / "x.csv")


def test_odd_bytes_bom_crlf_newlines_ragged(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(
        b"\xef\xbb\xbfcustomer_id,first_name,city\r\n"
        b"A,Ann,Paris\r\n"
        b'B,"Bo\r\nb",Lyon\r\n'  # quoted newline: still one record
        b"C,Cy\r\n"  # too few fields
        b"D,Di,Nice,extra\r\n"  # too many fields
        b"E,\xff\xfe,Metz\r\n"  # invalid UTF-8
        b"F,Fay,Caen\r\n"
    )
    result = ingest_file(workspace, "customers", path)
    assert (result.rows_read, result.accepted, result.rejected) == (6, 3, 3)
    got = rows(workspace, "customers", "customer_id")
    assert [(r["customer_id"], r["first_name"], r["city"]) for r in got] == [
        ("A", "Ann", "Paris"),
        ("B", "Bo\r\nb", "Lyon"),
        ("F", "Fay", "Caen"),
    ]
    q = quarantine(result)
    assert [(r["row"], r["field"]) for r in q] == [("3", "(row)"), ("4", "(row)"), ("5", "first_name")]
    assert q[0]["reason"].startswith("too few fields") and q[0]["raw_line"] == "C,Cy"
    assert q[1]["reason"].startswith("too many fields")
    assert q[2]["reason"].startswith("invalid UTF-8")
    assert result.reasons["(row): too few fields"] == 1


def test_unterminated_quote_is_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('customer_id,first_name\nA,Ann\nB,"Bob\nC,Cy\n')
    result = ingest_file(workspace, "customers", path)
    assert result.accepted == 1 and result.rejected == result.rows_read - 1
    assert all(r["field"] and r["reason"] for r in quarantine(result))


def test_header_only_file(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("customer_id,email\n")
    result = ingest_file(workspace, "customers", path)
    assert (result.rows_read, result.accepted, result.rejected, result.quarantine_path) == (0, 0, 0, None)


def test_gzip_csv(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("customer_id,email\nA,a@b.co\nB,bad\n")
    result = ingest_file(workspace, "customers", path)
    assert (result.accepted, result.rejected) == (1, 1)


def test_jsonl(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = {
        "event_id": "e1",
        "customer_id": "C1",
        "event_type": "page_view",
        "occurred_at": "2024-01-01T00:00:00Z",
    }
    lines = [
        json.dumps(good).encode(),
        b"",  # blank lines are skipped, but keep their line number
        b"not json",
        b"[1, 2]",
        json.dumps({**good, "event_id": 2, "occurred_at": 5, "extra": {"x": 1}}).encode(),
        json.dumps({**good, "event_id": "e3", "event_type": None}).encode(),
        json.dumps({**good, "event_id": "e4", "customer_id": "\u00e9\u6f22"}, ensure_ascii=False).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest_file(workspace, "events", path)
    assert result.rows_read == 6
    q = quarantine(result)
    assert [(r["row"], r["field"]) for r in q] == [
        ("3", "(row)"),
        ("4", "(row)"),
        ("5", "occurred_at"),
        ("6", "event_type"),
    ]
    assert q[0]["reason"].startswith("invalid JSON") and q[0]["raw_line"] == "not json"
    got = rows(workspace, "events", "event_id")
    assert [(r["event_id"], r["customer_id"]) for r in got] == [("e1", "C1"), ("e4", "\u00e9\u6f22")]
    assert any("extra" in w for w in result.warnings)


def test_parquet(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "stores.parquet"
    pd.DataFrame(
        {
            "store_id": ["S1", "S2", "S3"],
            "lat": [1.5, 95.0, None],
            "lon": [2.0, 3.0, 4.0],
            "Name": ["a", "b", "c"],
        }
    ).to_parquet(path)
    result = ingest_file(workspace, "stores", path)
    assert result.reasons == {"lat: latitude outside [-90, 90]": 1, "lat: required value missing": 1}
    assert [(r["row"], r["field"]) for r in quarantine(result)] == [("2", "lat"), ("3", "lat")]
    got = rows(workspace, "stores", "store_id")
    assert [(r["store_id"], r["lat"], r["name"]) for r in got] == [("S1", 1.5, "a")]


def test_progress_reported(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("customer_id\nA\n")
    calls: list[tuple[str, int, int]] = []
    workspace.ingest("customers", path, progress=lambda s, d, t: calls.append((s, d, t)))
    assert calls[0][1] == 0 and calls[-1][1] == calls[-1][2] > 0


def test_no_staging_tables_left_behind(workspace: Workspace, tmp_path: Path) -> None:
    csv_path, jsonl_path = tmp_path / "c.csv", tmp_path / "c.jsonl"
    csv_path.write_text("customer_id,email\nA,a@b.co\nB,x\nC\n")
    jsonl_path.write_text('{"customer_id": "D"}\nnot json\n')
    workspace.ingest("customers", csv_path)
    workspace.ingest("customers", jsonl_path)
    with pytest.raises(IngestError):
        workspace.ingest("transactions", csv_path)
    left = workspace.warehouse.raw_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%ingest%'"
    ).fetchall()
    assert left == []


def test_jsonl_whose_every_line_is_broken_is_quarantined_line_by_line(workspace, tmp_path):
    """Found by the property test: no parsable line means no keys, which must not fail the file."""
    path = tmp_path / "tx.jsonl"
    path.write_text('{"order_id": "broken\n{"order_id": "broken\n', encoding="utf-8")
    result = workspace.ingest("transactions", path)
    assert (result.rows_read, result.accepted, result.rejected) == (2, 0, 2)
    assert result.quarantine_path is not None and result.quarantine_path.exists()


def test_jsonl_key_missing_from_every_line_rejects_rows_not_the_file(workspace, tmp_path):
    path = tmp_path / "tx.jsonl"
    path.write_text(
        '{"order_id": "o1", "ordered_at": "2024-01-01", "amount": 3, "currency": "EUR"}\n', encoding="utf-8"
    )
    result = workspace.ingest("transactions", path)
    assert (result.accepted, result.rejected) == (0, 1)
    assert result.reasons == {"customer_id: required value missing": 1}
