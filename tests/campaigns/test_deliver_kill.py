"""SIGKILL the delivery worker at random moments of a 2,000-message send and restart it: the SMTP
server's own log shows every message received, at most one duplicate per kill, and duplicates
carrying the same Message-ID.

The SMTP server (aiosmtpd) runs in its own process and appends ``recipient<TAB>Message-ID`` to a
file for every message it accepts, flushed before it answers 250.  The worker is the real
``micromarketing deliver`` command in a subprocess, killed with SIGKILL (no cleanup of any kind)
when the server's log reaches thresholds drawn with a fixed seed."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import insert

from micromarketing.channels import message_key
from micromarketing.store.models import Campaign, OutboxMessage
from micromarketing.workspace import Workspace

MESSAGES = 2000
KILLS = 4
LEASE_SECONDS = 1.0
CLI = Path(sys.executable).with_name("micromarketing")
SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smtp_server(port: int, log_path: str, ready) -> None:  # type: ignore[no-untyped-def]
    import email

    from aiosmtpd.controller import Controller

    log = open(log_path, "a", buffering=1, encoding="ascii")  # noqa: SIM115 - lives as long as the process

    class Logging:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
            session.host_name = hostname  # PIPELINING, as Postfix: the client's riskier path
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            message_id = email.message_from_bytes(envelope.content)["Message-ID"]
            log.write(f"{envelope.rcpt_tos[0]}\t{message_id}\n")
            log.flush()
            return "250 OK"

    Controller(Logging(), hostname="127.0.0.1", port=port).start()
    ready.set()
    while True:
        time.sleep(3600)


def _received(log_path: Path) -> list[tuple[str, str]]:
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    return [tuple(line.split("\t")) for line in lines if line.count("\t") == 1]  # type: ignore[misc]


def _prepare(root: Path, port: int) -> None:
    """A workspace with a template, consent for everyone and 2,000 pending outbox rows."""
    Workspace.init(root).close()
    path = root / "micromarketing.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault("channels", {}).update(
        email={"port": port, "sender": "news@shop.example"},
        outbox={"lease_seconds": LEASE_SECONDS, "batch_size": 50, "poll_seconds": 0.1},
        retry={"base_delay_seconds": 0.1, "max_delay_seconds": 0.2},
    )
    data["policy"] = {"quiet_hours": "", "frequency_cap": ""}
    path.write_text(tomli_w.dumps(data))
    customers = [f"c{i:04d}" for i in range(MESSAGES)]
    consent = root / "consent.csv"
    consent.write_text(
        "customer_id,channel,status,recorded_at\n"
        + "".join(f"{c},email,opt_in,2026-01-01T00:00:00Z\n" for c in customers)
    )
    with Workspace.open(root) as ws:
        ws.ingest("consent", consent)
        ws.templates.add(
            "hello", {"subject": "Hello {{ customer.first_name }}", "text": "Hi {{ first_name }}"}
        )
        with ws.ops.session() as session:
            campaign = Campaign(name="kill", status="running")
            session.add(campaign)
            session.flush()
            due = datetime.now(UTC) - timedelta(seconds=1)
            rows = [
                {
                    "campaign_id": campaign.id,
                    "idempotency_key": message_key("kill", c, "email"),
                    "message_id": message_key("kill", c, "email"),
                    "customer_id": c,
                    "channel": "email",
                    "template_name": "hello",
                    "template_version": 1,
                    "fields": {"first_name": c.upper(), "email": f"{c}@example.com"},
                    "not_before": due,
                }
                for c in customers
            ]
            session.execute(insert(OutboxMessage), rows)


def _worker(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "MICROMARKETING_WORKSPACE": str(root)}
    return subprocess.Popen(
        [str(CLI), "deliver", "--rate", "400", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_killed_workers_lose_nothing_and_repeat_at_most_the_message_in_flight(tmp_path):
    ctx = mp.get_context("spawn")
    port, log_path, ready = _free_port(), tmp_path / "smtp.log", ctx.Event()
    server = ctx.Process(target=_smtp_server, args=(port, str(log_path), ready), daemon=True)
    server.start()
    try:
        assert ready.wait(30)
        root = tmp_path / "ws"
        _prepare(root, port)
        rng = random.Random(20261203)
        thresholds = sorted(rng.sample(range(150, MESSAGES - 150), KILLS))
        killed_at = []
        for threshold in thresholds:
            worker = _worker(root)
            deadline = time.monotonic() + 60
            while len(_received(log_path)) < threshold:
                assert worker.poll() is None, worker.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the worker made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))  # a random moment: mid-SMTP, mid-commit or between
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            killed_at.append(len(_received(log_path)))
            time.sleep(LEASE_SECONDS + 0.2)  # the dead worker's lease expires
        for _ in range(5):  # restarted until done
            final = _worker(root)
            _, err = final.communicate(timeout=120)
            assert final.returncode == 0, err.decode()
            with Workspace.open(root) as ws:
                counts = ws.delivery.status()
            if counts["sent"] == MESSAGES:
                break
            time.sleep(LEASE_SECONDS + 0.2)
        assert counts == {**dict.fromkeys(counts, 0), "sent": MESSAGES}
    finally:
        server.terminate()
        server.join(5)
    received = _received(log_path)
    ids: dict[str, set[str]] = defaultdict(set)
    copies: dict[str, int] = defaultdict(int)
    for rcpt, message_id in received:
        ids[rcpt].add(message_id)
        copies[rcpt] += 1
    assert len(ids) == MESSAGES  # no message lost
    duplicates = len(received) - MESSAGES
    assert duplicates <= KILLS, (duplicates, killed_at)  # at most the one in flight per kill
    for rcpt, seen in ids.items():  # a duplicate is the same message: the same Message-ID
        assert seen == {f"<{message_key('kill', rcpt.partition('@')[0], 'email')}@shop.example>"}
    assert all(n <= 2 for n in copies.values())
