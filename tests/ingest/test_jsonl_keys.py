"""Issue #12 item 3: JSON keys that differ only by case are a quarantine reason for the line."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from mm_strategies import colliding_jsonl

from micromarketing.workspace import Workspace


def _quarantine(path: Path | None) -> dict[int, dict[str, str]]:
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {int(r["row"]): r for r in csv.DictReader(fh)}


def _write(path: Path, objects: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


def test_line_with_both_spellings_is_quarantined(workspace: Workspace, tmp_path: Path) -> None:
    base = {"order_id": "O1", "ordered_at": "2024-01-01", "amount": 1, "currency": "EUR"}
    path = _write(tmp_path / "tx.jsonl", [
        {**base, "Customer_ID": "WRONG", "customer_id": "C1"},
        {**base, "order_id": "O2", "Customer_ID": "C2"},
        {**base, "order_id": "O3", "customer_id": "C3"},
    ])
    result = workspace.ingest("transactions", path)
    assert (result.accepted, result.rejected) == (2, 1)
    got = _quarantine(result.quarantine_path)
    assert got[1]["field"] == "customer_id"
    assert "differ only by case" in got[1]["reason"] and "Customer_ID and customer_id" in got[1]["reason"]
    assert '"WRONG"' in got[1]["raw_line"]
    tx = workspace.table("transactions").to_pyarrow().to_pylist()
    stored = {r["order_id"]: r["customer_id"] for r in tx}
    assert stored == {"O2": "C2", "O3": "C3"}
    assert result.reasons == {"customer_id: keys that differ only by case": 1}


def test_keys_differing_by_spaces_collide_too(workspace: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [{"customer_id": "A", " customer_id ": "B"}, {"customer_id": "C"}])
    result = workspace.ingest("customers", path)
    assert (result.accepted, result.rejected) == (1, 1)


# No shrinking: each example builds a workspace (about half a second).
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(colliding_jsonl())
def test_generated_colliding_keys(case) -> None:  # type: ignore[no-untyped-def]
    objects, colliding, customer = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "tx.jsonl", objects)
        ws = Workspace.init(Path(tmp) / "ws")
        try:
            result = ws.ingest("transactions", path)
            got = _quarantine(result.quarantine_path)
            tx = ws.table("transactions").to_pyarrow().to_pylist()
        finally:
            ws.close()
    stored = {r["order_id"]: r["customer_id"] for r in tx}
    assert sorted(got) == colliding
    for number in colliding:
        spellings = [k for k in objects[number - 1] if k.lower() == got[number]["field"]]
        assert len(spellings) == 2, (number, got[number])
        assert "differ only by case" in got[number]["reason"]
    assert stored == {f"O{n}": c for n, c in customer.items()}
