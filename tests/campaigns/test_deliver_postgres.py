"""Two delivery worker processes on one real PostgreSQL operations store, sending to aiosmtpd:
every message reaches the SMTP server exactly once and both processes did part of the work.

The claim takes rows with ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE … RETURNING``, so
the two workers never lease the same row; the DuckDB warehouse (read by the contact policy)
admits one process at a time, so the workers hand it over between batches.  Each worker is a
fresh interpreter running ``ws.delivery.deliver()`` (what ``micromarketing deliver`` runs); both
start at once behind a file gate after their imports, so start-up time decides nothing."""

from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from micromarketing.channels import message_key
from micromarketing.store.models import Campaign, DeliveryAttempt, OutboxMessage
from micromarketing.workspace import Workspace

pytestmark = pytest.mark.postgres

MESSAGES = 400
SRC = Path(__file__).resolve().parents[2] / "src"
WORKER = """
import json, sys, time
from pathlib import Path
from micromarketing.workspace import Workspace
root, gate = Path(sys.argv[1]), Path(sys.argv[2])
with Workspace.open(root) as ws:
    ws.delivery.status()  # connected: imports and the first query are behind us
    Path(sys.argv[3]).touch()
    while not gate.exists():
        time.sleep(0.01)
    print(json.dumps(ws.delivery.deliver().model_dump()))
"""


class Sink:
    """Records (recipient, Message-ID) of every accepted message; offers PIPELINING."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append((envelope.rcpt_tos[0], email.message_from_bytes(envelope.content)["Message-ID"]))
        return "250 OK"


@pytest.fixture
def pg_url(postgres_url):
    from mm_store_fixtures import fresh_database

    with fresh_database(postgres_url) as url:
        yield url


def _prepare(root: Path, port: int) -> list[str]:
    """Settings, consent, a template and ``MESSAGES`` due outbox rows; the customers."""
    Workspace.init(root).close()
    path = root / "micromarketing.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault("channels", {}).update(
        email={"port": port, "sender": "news@shop.example"},
        outbox={"batch_size": 50, "poll_seconds": 0.1},
    )
    data["policy"] = {"quiet_hours": "", "frequency_cap": ""}
    path.write_text(tomli_w.dumps(data))
    customers = [f"p{i:04d}" for i in range(MESSAGES)]
    consent = root / "consent.csv"
    consent.write_text(
        "customer_id,channel,status,recorded_at\n"
        + "".join(f"{c},email,opt_in,2026-01-01T00:00:00Z\n" for c in customers)
    )
    with Workspace.open(root) as ws:
        assert ws.ops.dialect == "postgresql"
        ws.ingest("consent", consent)
        ws.templates.add("hello", {"subject": "Hello {{ customer.first_name }}", "text": "Hi"})
        with ws.ops.session() as session:
            campaign = Campaign(name="pg", status="running")
            session.add(campaign)
            session.flush()
            due = datetime.now(UTC) - timedelta(seconds=1)
            session.execute(
                insert(OutboxMessage),
                [
                    {
                        "campaign_id": campaign.id,
                        "idempotency_key": message_key("pg", c, "email"),
                        "message_id": message_key("pg", c, "email"),
                        "customer_id": c,
                        "channel": "email",
                        "template_name": "hello",
                        "template_version": 1,
                        "fields": {"first_name": c.upper(), "email": f"{c}@example.com"},
                        "not_before": due,
                    }
                    for c in customers
                ],
            )
    return customers


def test_two_worker_processes_on_postgresql_send_every_message_exactly_once(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROMARKETING_OPS__URL", pg_url)
    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        root = tmp_path / "ws"
        customers = _prepare(root, port)
        gate = tmp_path / "go"
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        ready = [tmp_path / f"ready{i}" for i in range(2)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(root), str(gate), str(flag)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for flag in ready
        ]
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready):
            assert all(w.poll() is None for w in workers), [w.stderr.read().decode() for w in workers]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        gate.touch()
        outputs = [w.communicate(timeout=120) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err.decode() for _, err in outputs]
        with Workspace.open(root) as ws:
            counts = ws.delivery.status()
            with ws.ops.session() as session:
                attempts = session.execute(select(DeliveryAttempt.outbox_id, DeliveryAttempt.worker)).all()
    finally:
        controller.stop()
    assert counts == {**dict.fromkeys(counts, 0), "sent": MESSAGES}
    copies = Counter(rcpt for rcpt, _ in sink.received)
    assert copies == Counter({f"{c}@example.com": 1 for c in customers})  # every one, exactly once
    assert {mid for _, mid in sink.received} == {
        f"<{message_key('pg', c, 'email')}@shop.example>" for c in customers
    }
    assert len(attempts) == MESSAGES and len({outbox_id for outbox_id, _ in attempts}) == MESSAGES
    per_worker = Counter(worker for _, worker in attempts)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker  # both processes sent
