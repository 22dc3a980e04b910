"""`privacy forget`: after it, no table, column or workspace file holds the person (#15).

The workspace is real and small: customers, orders, events and consent ingested from CSV (one
order rejected into quarantine), profiles built, a table another part might add later
(recommendations), campaign rows, an outbox message with the person's fields and its send
ledger, suppressions and audit records in the operations store, and the files the channels
write (direct mail CSV + Parquet, an ad audience, a segment export, a JSON feed, an HTML report).
The search afterwards is independent of the erasure code: every column of every table through
SQL, every file's bytes (Parquet and gzip decoded).  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import inspect, select, text

from micromarketing.channels.audiences import AudienceContact, write_audience
from micromarketing.channels.direct_mail import DirectMailRecipient, write_direct_mail
from micromarketing.errors import NotFoundError
from micromarketing.store.models import (
    Assignment,
    AuditEvent,
    Campaign,
    DeliveryAttempt,
    OutboxMessage,
    Suppression,
)
from micromarketing.workspace import Workspace

ID, OTHER = "C-ZQ-7", "C-AB-1"
EMAIL, PHONE = "Zephyrine.Quillfeather@example.org", "+33 6 98 76 54 32"
FIRST, LAST = "Zéphyrine", "Quillfeather"
NEEDLES = (EMAIL, EMAIL.lower(), PHONE, "33698765432", f"{FIRST} {LAST}", LAST, ID)

CUSTOMERS = (
    "customer_id,first_name,last_name,email,phone,city,postcode,country,signup_date\n"
    f"{ID},{FIRST},{LAST},{EMAIL},{PHONE},Lyon,69001,FR,2024-01-10\n"
    f"{OTHER},Anna,Berg,anna.berg@example.com,+33 6 11 22 33 44,Paris,75001,FR,2024-02-01\n"
)
TRANSACTIONS = (
    "order_id,line_no,customer_id,ordered_at,product_id,category,quantity,amount,currency\n"
    f"o1,1,{ID},2026-01-05T10:00:00Z,p1,books,1,20.0,EUR\n"
    f"o2,1,{ID},2026-02-05T10:00:00Z,p2,books,1,-5.0,EUR\n"  # rejected: quarantined with the id
    f"o3,1,{OTHER},2026-01-07T10:00:00Z,p1,books,2,40.0,EUR\n"
)
EVENTS = (
    "event_id,customer_id,event_type,occurred_at,channel\n"
    f"e1,{ID},email_open,2026-01-06T10:00:00Z,email\n"
    f"e2,{OTHER},page_view,2026-01-06T11:00:00Z,web\n"
)
CONSENT = (
    "customer_id,channel,status,recorded_at,source\n"
    f"{ID},email,opt_in,2025-12-01T00:00:00Z,signup\n"
    f"{OTHER},email,opt_in,2025-12-01T00:00:00Z,signup\n"
)


def _ingest(ws: Workspace, tmp_path: Path) -> None:
    for kind, content in (("customers", CUSTOMERS), ("transactions", TRANSACTIONS), ("events", EVENTS),
                          ("consent", CONSENT)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(content, encoding="utf-8")
        ws.ingest(kind, path)


def _populate(ws: Workspace, tmp_path: Path) -> None:
    _ingest(ws, tmp_path)
    ws.profile(as_of=datetime(2026, 3, 1).date())
    ws.warehouse.create_from("recommendations", pa.table(
        {"customer_id": [ID, OTHER], "product_id": ["p9", "p8"], "score": [0.9, 0.8]}))
    ws.privacy.record_consent(ID, "sms", "opt_out", purpose="newsletter", source="preference centre")
    with ws.ops.session() as s:
        campaign = Campaign(name="spring", spec={"test_recipients": [ID], "note": f"seed list {EMAIL}"})
        s.add(campaign)
        s.flush()
        s.add_all([Assignment(campaign_id=campaign.id, customer_id=c, segment="all", arm="a")
                   for c in (ID, OTHER)])
        message = OutboxMessage(campaign_id=campaign.id, idempotency_key="k-zq", message_id="<1@x>",
                                customer_id=ID, channel="email",
                                fields={"email": EMAIL, "first_name": FIRST, "last_name": LAST})
        s.add(message)
        s.add(OutboxMessage(campaign_id=campaign.id, idempotency_key="k-ab", message_id="<2@x>",
                            customer_id=OTHER, channel="email", fields={"first_name": "Anna"}))
        s.flush()
        s.add(DeliveryAttempt(outbox_id=message.id, attempt=1, status="sent", reason=f"250 OK {EMAIL}"))
        s.add(Suppression(customer_id=ID, channel="sms", kind="unsubscribe", source="one-click"))
        s.add(Suppression(customer_id=None, channel="email", kind="hard_bounce",
                          reason=f"550 {EMAIL} unknown"))
    ws.audit("customer.note", ID, {"customer_id": ID, "by": "support"})
    exports = ws.root / "exports"
    write_direct_mail(
        [DirectMailRecipient(customer_id=c, first_name=f, last_name=n, address_line1="1 rue X", city="Lyon",
                             postal_code="69001", country="FR") for c, f, n in ((ID, FIRST, LAST),
                                                                              (OTHER, "Anna", "Berg"))],
        exports / "mail.csv", exports / "mail.parquet",
    )
    write_audience([AudienceContact(customer_id=ID, ad_consent=True, email=EMAIL, phone=PHONE),
                    AudienceContact(customer_id=OTHER, ad_consent=True, email="anna.berg@example.com")],
                   "meta", exports / "audience-meta.csv")
    segment = f"customer_id,segment\n{ID},vip\n{OTHER},vip\n"
    (exports / "segment.csv.gz").write_bytes(gzip.compress(segment.encode()))
    (exports / "feed.jsonl").write_text(json.dumps({"customer_id": ID, "name": FIRST}) + "\n"
                                        + json.dumps({"customer_id": OTHER, "name": "Anna"}) + "\n")
    (exports / "summary.json").write_text(json.dumps({"top": [{"customer_id": ID, "email": EMAIL},
                                                              {"customer_id": OTHER}], "total": 2}))
    reports = ws.root / "reports"
    reports.mkdir()
    (reports / "campaign.html").write_text(
        f"<p>Best customer: {FIRST} {LAST} ({EMAIL}, {PHONE}), id {ID}</p>")


def _warehouse_hits(ws: Workspace, needles: tuple[str, ...]) -> list[str]:
    hits = []
    for table, columns in ws.warehouse.base_tables().items():
        for column in columns:
            for needle in needles:
                found = ws.warehouse.raw_sql(
                    f'SELECT count(*) FROM "{table}" WHERE lower(CAST("{column}" AS VARCHAR)) '
                    f"LIKE '%{needle.lower()}%'"
                ).fetchone()[0]
                if found:
                    hits.append(f"{table}.{column} holds {needle!r}")
    return hits


def _ops_hits(ws: Workspace, needles: tuple[str, ...]) -> list[str]:
    hits = []
    with ws.ops.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                for column, value in row.items():
                    shown = str(value).lower()
                    hits += [f"{table}.{column} holds {n!r}" for n in needles if n.lower() in shown]
    return hits


def _file_hits(ws: Workspace, needles: tuple[str, ...]) -> list[str]:
    databases = {"warehouse.duckdb", "warehouse.duckdb.wal", "ops.sqlite", "ops.sqlite-wal", "ops.sqlite-shm"}
    hits = []
    for path in ws.root.rglob("*"):
        if not path.is_file() or path.name in databases:
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        if path.suffix == ".parquet":
            data = repr(pq.read_table(path).to_pylist()).encode()
        low = data.decode("utf-8", errors="replace").lower()
        hits += [f"{path.relative_to(ws.root)} holds {n!r}" for n in needles if n.lower() in low]
    return hits


def test_forget_leaves_nothing_of_the_person_in_any_table_or_file(ops_workspace, tmp_path):
    ws = ops_workspace
    _populate(ws, tmp_path)
    assert _warehouse_hits(ws, NEEDLES) and _ops_hits(ws, NEEDLES) and _file_hits(ws, NEEDLES)  # planted

    report = ws.privacy.forget(ID)

    assert _warehouse_hits(ws, NEEDLES) == []
    assert _ops_hits(ws, NEEDLES) == []
    assert _file_hits(ws, NEEDLES) == []
    assert report.warehouse_rows["customers"] == 1 and report.warehouse_rows["recommendations"] == 1
    assert report.ops_rows["outbox"] == 1 and report.ops_rows["delivery_attempts"] == 1
    assert {"exports/mail.csv", "exports/mail.parquet", "exports/audience-meta.csv",
            "reports/campaign.html", "exports/segment.csv.gz", "exports/feed.jsonl",
            "exports/summary.json"} <= set(report.files_rewritten)
    assert any(f.startswith("quarantine/") for f in report.files_rewritten)
    # everyone else is untouched
    assert ws.table("customers").customer_id.execute().tolist() == [OTHER]
    assert "anna.berg@example.com" in (ws.root / "exports" / "mail.csv").read_text() or \
        "Berg" in (ws.root / "exports" / "mail.csv").read_text()
    assert len((ws.root / "exports" / "audience-meta.csv").read_text().splitlines()) == 2
    with ws.ops.session() as s:
        assert s.scalars(select(OutboxMessage.customer_id)).all() == [OTHER]
        erased = s.scalars(select(Suppression).where(Suppression.kind == "erased")).all()
    assert erased and all(e.customer_id is None and len(e.subject_hash) == 64 for e in erased)
    assert len(erased) == 3  # id, email, phone
    assert ws.privacy.is_erased(customer_id=ID)
    assert ws.privacy.is_erased(email=EMAIL.upper())
    assert ws.privacy.is_erased(phone="+33-6-98-76-54-32")
    assert not ws.privacy.is_erased(customer_id=OTHER)


def test_the_erasure_is_audited_without_the_person(ops_workspace, tmp_path):
    ws = ops_workspace
    _populate(ws, tmp_path)
    report = ws.privacy.forget(ID, actor="cli:dpo")
    with ws.ops.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.forget")).one()
    assert event.actor == "cli:dpo" and event.subject == report.subject
    assert report.subject.startswith("erased:")
    assert all(n.lower() not in repr((event.subject, event.details)).lower() for n in NEEDLES)


def test_a_re_ingest_of_an_erased_person_is_refused_and_keeps_none_of_their_values(ops_workspace, tmp_path):
    ws = ops_workspace
    _ingest(ws, tmp_path)
    ws.privacy.forget(ID)
    # the same person under a new id is recognised by their email too
    again = tmp_path / "again.csv"
    again.write_text(CUSTOMERS + f"C-NEW,{FIRST},{LAST},{EMAIL.upper()},,Lyon,69001,FR,2024-01-10\n")
    result = ws.ingest("customers", again)
    assert result.accepted == 1 and result.rejected == 2
    assert result.reasons == {"customer_id: erased customer (right to erasure): not ingested again": 2}
    assert ws.table("customers").customer_id.execute().tolist() == [OTHER]
    assert _file_hits(ws, NEEDLES[:-1]) == []  # the quarantine file names the rows, not their values
    tx = ws.ingest("transactions", tmp_path / "transactions.csv")
    assert tx.rejected == 2 and tx.accepted == 1
    assert _warehouse_hits(ws, NEEDLES) == []


def test_forgetting_an_unknown_id_is_a_clear_error(ops_workspace):
    with pytest.raises(NotFoundError, match="nothing is held"):
        ops_workspace.privacy.forget("nobody")


def test_forgetting_twice_is_harmless(ops_workspace, tmp_path):
    ws = ops_workspace
    _ingest(ws, tmp_path)
    ws.privacy.forget(ID)
    second = ws.privacy.forget(ID)
    assert second.already_erased and second.suppressions_added == 0
    assert second.warehouse_rows == {} and second.ops_rows == {}


def test_records_ingested_at_the_same_time_as_the_erasure_are_untouched(ops_workspace, tmp_path):
    """Erasure compares whole values: an id that is a prefix of another id stays."""
    ws = ops_workspace
    path = tmp_path / "c.csv"
    path.write_text("customer_id,email\nC1,a@example.com\nC10,b@example.com\n")
    ws.ingest("customers", path)
    ws.audit("note", "C10", {"customer_id": "C10", "when": datetime.now(UTC).isoformat()})
    ws.privacy.forget("C1")
    assert ws.table("customers").customer_id.execute().tolist() == ["C10"]
    with ws.ops.session() as s:
        assert s.scalars(select(AuditEvent.subject).where(AuditEvent.action == "note")).one() == "C10"
