"""`privacy export` (everything held, as JSON) and `privacy retain` (the [privacy] rules)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from micromarketing.errors import NotFoundError
from micromarketing.privacy.retention import months_before
from micromarketing.store.models import Campaign, DeliveryAttempt, OutboxMessage
from micromarketing.workspace import Workspace

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _write(tmp_path, name: str, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _small(ws: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws.ingest("customers", _write(tmp_path, "c.csv",
        "customer_id,first_name,email,signup_date\n"
        "C1,Ann,ann@example.com,2025-06-01\nC2,Bob,bob@example.com,2019-01-01\nC3,Cy,,\n"))
    ws.ingest("transactions", _write(tmp_path, "t.csv",
        "order_id,customer_id,ordered_at,amount,currency\n"
        "o1,C1,2026-11-01T00:00:00Z,10,EUR\no2,C1,2023-01-01T00:00:00Z,20,EUR\n"
        "o3,C2,2019-02-01T00:00:00Z,30,EUR\n"))
    ws.ingest("events", _write(tmp_path, "e.csv",
        "event_id,customer_id,event_type,occurred_at\n"
        "e1,C1,page_view,2026-11-02T00:00:00Z\ne2,C1,page_view,2024-11-30T00:00:00Z\n"
        "e3,C2,page_view,2019-03-01T00:00:00Z\n"))


def test_export_holds_every_table_about_the_person_as_json(ops_workspace, tmp_path):
    ws = ops_workspace
    _small(ws, tmp_path)
    ws.privacy.record_consent("C1", "email", "opt_in", at=NOW)
    pause_end = NOW + timedelta(days=14)
    ws.privacy.record_consent("C1", "email", "opt_out", at=NOW + timedelta(seconds=1), valid_until=pause_end)
    with ws.ops.session() as s:
        campaign = Campaign(name="c")
        s.add(campaign)
        s.flush()
        message = OutboxMessage(campaign_id=campaign.id, idempotency_key="k", message_id="<m>",
                                customer_id="C1", channel="email", fields={"first_name": "Ann"})
        s.add(message)
        s.flush()
        s.add(DeliveryAttempt(outbox_id=message.id, attempt=1, status="sent"))
    data = ws.privacy.export("C1")
    assert set(data.warehouse) >= {"customers", "transactions", "events", "consent"}
    assert data.warehouse["customers"][0]["email"] == "ann@example.com"
    ends = sorted((r["status"], r["valid_until"]) for r in data.warehouse["consent"])
    assert ends == [("opt_in", None), ("opt_out", pause_end.isoformat())]  # the pause's end is shown
    assert len(data.warehouse["transactions"]) == 2
    assert data.operations["outbox"][0]["fields"] == {"first_name": "Ann"}
    assert data.operations["delivery_attempts"][0]["status"] == "sent"
    assert "C2" not in json.dumps(data.model_dump(mode="json"))
    assert json.loads(data.model_dump_json())["customer_id"] == "C1"
    assert ws.privacy.audit_log(action="privacy.export")[0].subject == "C1"
    with pytest.raises(NotFoundError):
        ws.privacy.export("nobody")


def test_months_before_clamps_the_day():
    assert months_before(datetime(2026, 3, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 24) == datetime(2024, 1, 15, tzinfo=UTC)
    assert months_before(datetime(2024, 2, 29, tzinfo=UTC), 12) == datetime(2023, 2, 28, tzinfo=UTC)


def test_retain_dry_run_counts_then_the_run_purges(ops_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROMARKETING_PRIVACY__TRANSACTIONS_MAX_AGE_MONTHS", "36")
    monkeypatch.setenv("MICROMARKETING_PRIVACY__INACTIVE_CUSTOMER_YEARS", "5")
    ws = Workspace.open(ops_workspace.root)
    ops_workspace.close()
    _small(ws, tmp_path)
    old = ws.root / "quarantine" / "old.csv"
    old.parent.mkdir(exist_ok=True)
    old.write_text("file,row\n")
    os.utime(old, (time.time() - 200 * 86400,) * 2)
    fresh = ws.root / "quarantine" / "fresh.csv"
    fresh.write_text("file,row\n")

    dry = ws.privacy.retain(dry_run=True, now=NOW)
    assert dry.purged == {"events": 2, "transactions": 2, "inactive_customers": 1, "quarantine_files": 1}
    assert ws.table("events").count().execute() == 3 and old.exists()  # nothing changed

    done = ws.privacy.retain(now=NOW)
    assert done.purged == dry.purged
    assert sorted(ws.table("events").event_id.execute()) == ["e1"]  # e2 (2024-11-30), e3: > 24 months
    assert sorted(ws.table("transactions").order_id.execute()) == ["o1"]  # o2, o3: > 36 months
    assert sorted(ws.table("customers").customer_id.execute()) == ["C1", "C3"]  # C3: no dates, kept
    assert not old.exists() and fresh.exists()
    orders = ws.warehouse.rollup("customer_orders").to_pyarrow().to_pylist()
    assert [(r["customer_id"], r["orders"]) for r in orders] == [("C1", 1)]  # rollup refreshed
    assert ws.privacy.audit_log(action="privacy.retain")[0].details["purged"] == done.purged
    ws.close()


def test_default_rules_keep_recent_data(workspace, tmp_path):
    _small(workspace, tmp_path)
    report = workspace.privacy.retain(now=datetime(2026, 11, 3, tzinfo=UTC))
    assert report.purged["events"] == 1  # only e3 (2019); defaults: events 24 months, no tx rule
    assert "transactions" not in report.purged and "inactive_customers" not in report.purged
    assert workspace.table("transactions").count().execute() == 3
    with workspace.ops.session() as s:
        assert s.scalars(select(OutboxMessage)).all() == []
    assert date(2026, 11, 3) > date(2024, 11, 3)
