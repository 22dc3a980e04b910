"""Deliver the outbox end to end (policy, render, outbox records, SMTP): messages/s for 1 and 2
workers, against a bare ``smtplib`` loop sending prebuilt messages in the same run.

* **baseline: bare smtplib** — one connection, ``sendmail`` of messages built beforehand (no
  database, no policy, no render): the ceiling the client side of SMTP allows on this machine;
* **deliver, 2 workers, no policy** — the same with a policy that sends everything: what the
  contact policy's queries cost;
* **deliver, 1 worker / 2 workers** — ``ws.delivery.deliver(workers=W)`` on the messages queued
  in the outbox of a fresh workspace (SQLite operations store), everyone with email consent:
  claim under a lease, the campaigns' contact policy (consent, suppressions, frequency cap; quiet
  hours off so the time of day does not matter), the sandboxed template rendered from the frozen
  fields, the MIME build, SMTP over one reused connection per worker (worker threads), and a
  committed record (state + ledger row) per message.

The SMTP sink (aiosmtpd, counting messages, offering PIPELINING as Postfix does) runs in *its own
process* on 127.0.0.1: in the client's process both would share one GIL.  Target: ≥ 1,000
messages/s on 2 cores.  Each line also gives the CPU time per message of the client (this
process) and of the sink: on a machine shared with other work the wall-clock rates stretch, the
CPU times much less, and they bound what two idle cores can do.

    .venv/bin/python benchmarks/deliver_bench.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import smtplib
import socket
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tomli_w
from sqlalchemy import delete, insert, update

from micromarketing.campaigns.policy import PolicyDecision
from micromarketing.channels import OutgoingMessage, message_key
from micromarketing.channels.email import build_email
from micromarketing.store.models import Campaign, DeliveryAttempt, OutboxMessage
from micromarketing.workspace import Workspace

TEMPLATE = {
    "subject": "Spring picks for {{ customer.first_name }}",
    "text": "Hello {{ customer.first_name }},\n\nyour code {{ offer.code }} takes 10% off until Sunday.\n"
    "Unsubscribe: {{ unsubscribe_url }}\n",
    "html": "<html><body><p>Hello {{ customer.first_name }},</p><p>your code <b>{{ offer.code }}</b> "
    'takes 10% off until Sunday.</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>',
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sink(port: int, count, ready) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
            session.host_name = hostname  # PIPELINING (RFC 2920), as Postfix offers it
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (default: this one) so far."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(count, target: int, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while count.value < target and time.monotonic() < deadline:
        time.sleep(0.01)


def _per_message(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e3:.2f} ms"


def send_everything(ctx, session, message, now) -> PolicyDecision:  # type: ignore[no-untyped-def]
    """A policy that lets every message through: what the contact policy itself costs."""
    return PolicyDecision(action="send")


def baseline(port: int, n: int, sink_pid: int) -> tuple[float, float, float]:
    """Seconds for a bare smtplib loop to send ``n`` prebuilt messages over one connection, and
    the CPU seconds the client and the sink spent meanwhile."""
    messages = [
        build_email(
            OutgoingMessage(
                message_id=message_key("bench", f"c{i}", "email"),
                customer_id=f"c{i}",
                channel="email",
                to=f"c{i}@example.com",
                subject=f"Spring picks for C{i}",
                text="Hello,\n\nyour code SPRING10 takes 10% off until Sunday.\n",
                html="<html><body><p>Hello,</p><p>your code <b>SPRING10</b> takes 10% off.</p></body></html>",
                unsubscribe_url=f"http://127.0.0.1:8000/u/token{i}",
            ),
            sender="news@shop.example",
            domain="shop.example",
        )
        for i in range(n)
    ]
    cpu, sink_cpu = _cpu_seconds(), _cpu_seconds(sink_pid)
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i, data in enumerate(messages):
            smtp.sendmail("news@shop.example", [f"c{i}@example.com"], data)
    return time.perf_counter() - started, _cpu_seconds() - cpu, _cpu_seconds(sink_pid) - sink_cpu


def prepare(root: Path, port: int, n: int) -> Workspace:
    """A workspace whose outbox holds ``n`` pending email messages of one campaign."""
    Workspace.init(root).close()
    settings = root / "micromarketing.toml"
    data = tomllib.loads(settings.read_text())
    data.setdefault("channels", {}).setdefault("email", {}).update(port=port, sender="news@shop.example")
    data["policy"] = {"quiet_hours": ""}  # else a run at night defers everything (caps stay on)
    settings.write_text(tomli_w.dumps(data))
    consent = root / "consent.csv"
    consent.write_text(
        "customer_id,channel,status,recorded_at\n"
        + "".join(f"c{i},email,opt_in,2026-01-01T00:00:00Z\n" for i in range(n))
    )
    ws = Workspace.open(root)
    ws.ingest("consent", consent)
    ws.templates.add("spring", TEMPLATE)
    with ws.ops.session() as session:
        campaign = Campaign(name="bench", status="running")
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    due = datetime.now(UTC) - timedelta(seconds=1)
    rows = []
    for i in range(n):
        key = message_key("bench", f"c{i}", "email")
        rows.append(
            dict(
                campaign_id=campaign_id,
                idempotency_key=key,
                message_id=key,
                customer_id=f"c{i}",
                channel="email",
                variant="a",
                template_name="spring",
                template_version=1,
                offer_code="SPRING10",
                fields={"first_name": f"C{i}", "email": f"c{i}@example.com", "_offer": {"code": "SPRING10"}},
                not_before=due,
            )
        )
    with ws.ops.session() as session:
        for start in range(0, n, 10_000):
            session.execute(insert(OutboxMessage), rows[start : start + 10_000])
    return ws


def reset(ws: Workspace) -> None:
    """Every message pending again, the ledger emptied, the campaign running."""
    with ws.ops.session() as session:
        session.execute(delete(DeliveryAttempt))
        session.execute(
            update(OutboxMessage).values(
                state="pending", attempts=0, reason="", lease_owner=None, lease_expires_at=None, sent_at=None
            )
        )
        session.execute(update(Campaign).values(status="running", finished_at=None))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args(argv)
    n = args.messages
    ctx = mp.get_context("spawn")
    count, ready = ctx.Value("q", 0), ctx.Event()
    port = _free_port()
    sink = ctx.Process(target=_sink, args=(port, count, ready), daemon=True)
    sink.start()
    if not ready.wait(180):
        raise SystemExit("the SMTP sink did not start within 180 s")
    print(f"{n:,} messages to an aiosmtpd sink in its own process on 127.0.0.1:{port}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, client_cpu, sink_used = baseline(port, n, sink.pid)
            _wait_for(count, n)
            base_rate = n / seconds
            print(
                f"  baseline: bare smtplib, prebuilt messages   {base_rate:8,.0f} msg/s  ({seconds:.1f} s;"
                f" CPU/msg: client {_per_message(client_cpu, n)}, sink {_per_message(sink_used, n)})"
            )
            ws = prepare(Path(tmp) / "ws", port, n)
            for workers, policy in ((1, None), (2, None), (2, send_everything)):
                if (workers, policy) != (1, None):
                    reset(ws)
                before = count.value
                cpu, sink_cpu = _cpu_seconds(), _cpu_seconds(sink.pid)
                started = time.perf_counter()
                report = ws.delivery.deliver(workers=workers, policy=policy)
                seconds = time.perf_counter() - started
                _wait_for(count, before + n)
                client_cpu, sink_used = _cpu_seconds() - cpu, _cpu_seconds(sink.pid) - sink_cpu
                rate = report.sent / seconds
                what = "policy+render+outbox+SMTP" if policy is None else "no policy: render+outbox+SMTP"
                print(
                    f"  deliver, {workers} worker{'s' if workers > 1 else ' '} ({what})"
                    f" {rate:8,.0f} msg/s  ({seconds:.1f} s, {rate / base_rate:.0%} of baseline,"
                    f" sent {report.sent:,}, sink got {count.value - before:,};"
                    f" CPU/msg: client {_per_message(client_cpu, n)}, sink {_per_message(sink_used, n)})"
                )
                if report.sent != n:
                    print(f"  !! expected {n:,} sent, report says {report.model_dump()}", file=sys.stderr)
            ws.close()
        print("  target: ≥ 1,000 msg/s on 2 cores")
    finally:
        sink.terminate()
        sink.join(5)


if __name__ == "__main__":
    main()
