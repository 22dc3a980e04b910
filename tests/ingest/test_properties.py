"""Property tests: generated transaction files with known good and broken rows (tests/strategies.py)."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mm_strategies import TX_COLUMNS, TxFile, transaction_files

from micromarketing.errors import IngestError
from micromarketing.ingest import ingest_file
from micromarketing.workspace import Workspace


# No shrinking: each example builds a workspace and ingests twice (about 0.5 s), and shrinking a
# 25-row file took over five minutes; the unshrunk example and the failing column are printed.
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(transaction_files())
def test_generated_transaction_files(tx: TxFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            path = tx.write(Path(tmp))
            result = ingest_file(ws, "transactions", path)
            stored = ws.table("transactions").to_pandas()
            quarantined = _quarantine(result.quarantine_path)
            again = ingest_file(ws, "transactions", path)
            stored_again = ws.table("transactions").to_pandas()
        finally:
            ws.close()

    # Counts add up, and match what the strategy knows.
    assert result.rows_read == len(tx.rows)
    assert result.accepted + result.rejected == result.rows_read
    last: dict[tuple[str, int], int] = {}
    for number, row in enumerate(tx.rows, start=1):
        if row.key is not None:
            last[row.key] = number
    assert result.accepted == len(last)
    assert sum(result.reasons.values()) == result.rejected

    # Every valid row that is the last of its key is stored with the right values.
    assert len(stored) == len(last)
    by_key = {(r["order_id"], r["line_no"]): r for r in stored.to_dict(orient="records")}
    for key, number in last.items():
        got, want = by_key[key], tx.rows[number - 1].expected
        assert want is not None
        for column in TX_COLUMNS:
            value = got[column]
            if column == "ordered_at":
                assert pd.Timestamp(value).to_pydatetime() == want[column]
            elif want[column] is None:
                assert value is None or pd.isna(value), column
            else:
                assert value == want[column], column

    # Every rejected row is in quarantine with its row number, the right field and a reason.
    expected_rejects = {}
    for number, row in enumerate(tx.rows, start=1):
        if row.bad_field is not None:
            expected_rejects[number] = row.bad_field
        elif row.key is not None and last[row.key] != number:
            expected_rejects[number] = "order_id+line_no"
    got_rejects = {int(r["row"]): r["field"] for r in quarantined}
    assert got_rejects == expected_rejects
    assert all(r["field"] and r["reason"] and r["file"] == str(path) for r in quarantined)

    # Re-ingesting changes nothing.
    assert (again.accepted, again.rejected) == (result.accepted, result.rejected)
    key = ["order_id", "line_no"]
    pd.testing.assert_frame_equal(
        stored.sort_values(key).reset_index(drop=True), stored_again.sort_values(key).reset_index(drop=True)
    )


def _quarantine(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    header=st.sampled_from([b"customer_id,email\n", b"\xef\xbb\xbfcustomer_id,first_name,city\r\n", b""]),
    suffix=st.sampled_from([".csv", ".jsonl"]),
)
def test_arbitrary_bytes_never_crash(body: bytes, header: bytes, suffix: str) -> None:
    """Whatever the bytes, ingest either accounts for every row or raises IngestError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"customers{suffix}"
        path.write_bytes((header if suffix == ".csv" else b"") + body)
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            result = ingest_file(ws, "customers", path)
        except IngestError as exc:
            assert path.name in str(exc)
            return
        finally:
            ws.close()
        assert result.accepted + result.rejected == result.rows_read
        assert all(r["field"] and r["reason"] for r in _quarantine(result.quarantine_path))
