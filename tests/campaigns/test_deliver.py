"""The delivery worker end to end against real servers on 127.0.0.1: aiosmtpd for email, an HTTP
server for webhook and SMS (verified with ``standardwebhooks``), files for direct mail and ad
audiences; the policy and render seams, retries, bounces, rate limits and the CLI."""

from __future__ import annotations

import csv
import email
import json
import socket
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomli_w
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from standardwebhooks import Webhook
from typer.testing import CliRunner

from micromarketing.campaigns import outbox
from micromarketing.campaigns.deliver import DeliveryWorker, TokenBucket
from micromarketing.campaigns.ingredients import render_frozen
from micromarketing.campaigns.policy import CONSENT_CHANNEL, PolicyDecision
from micromarketing.channels import message_key
from micromarketing.channels.webhook import generate_secret
from micromarketing.cli.main import app
from micromarketing.store.models import Campaign, OutboxMessage, Suppression
from micromarketing.workspace import Workspace

TEMPLATE = {
    "subject": "Hello {{ customer.first_name }}",
    "text": "Hi {{ customer.first_name }}, use {{ offer.code }}.",
    "html": "<html><body><p>Hi {{ customer.first_name }}</p></body></html>",
    "sms": "Hi {{ customer.first_name }}! Reply STOP to opt out",
}


# -- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """550 for recipients starting with "bounce"; 451 the first time for "defer"; advertises
    PIPELINING as Postfix does (the channel's tests cover servers without it)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, str, tuple]] = []  # (time, rcpt, Message-ID, peer)
        self.deferred: set[str] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("bounce"):
            return "550 5.1.1 No such user"
        if address.startswith("defer") and address not in self.deferred:
            self.deferred.add(address)
            return "451 4.7.1 Greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        parsed = email.message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            self.received.append((time.monotonic(), rcpt, parsed["Message-ID"], session.peer))
        return "250 OK"


@pytest.fixture
def smtp():
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    srv = Receiver()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


# -- workspace helpers --------------------------------------------------------------------------
def configure(root: Path, **tables) -> None:
    """Merge ``tables`` (dotted names → values) into the workspace's micromarketing.toml."""
    path = root / "micromarketing.toml"
    data = tomllib.loads(path.read_text())
    for dotted, values in tables.items():
        node = data
        for key in dotted.split("."):
            node = node.setdefault(key, {})
        node.update(values)
    path.write_text(tomli_w.dumps(data))


@pytest.fixture
def ws(tmp_path, smtp):
    _, port = smtp
    Workspace.init(tmp_path / "ws").close()
    configure(
        tmp_path / "ws",
        **{
            "channels.email": {"port": port, "sender": "news@shop.example"},
            "channels.retry": {"max_attempts": 3, "base_delay_seconds": 0.05, "max_delay_seconds": 0.1},
            "policy": {"quiet_hours": "", "frequency_cap": ""},  # the time of day must not matter
        },
    )
    workspace = Workspace.open(tmp_path / "ws")
    workspace.templates.add("hello", TEMPLATE)
    try:
        yield workspace
    finally:
        workspace.close()


def consent(ws, customers: list[str], channel: str, status: str = "opt_in") -> None:
    """Record consent of ``customers`` on the consent channel governing ``channel``."""
    path = ws.root / f"consent-{channel}-{len(customers)}-{customers[0]}.csv"
    lines = [f"{c},{CONSENT_CHANNEL[channel]},{status},2026-01-01T00:00:00Z" for c in customers]
    path.write_text("customer_id,channel,status,recorded_at\n" + "\n".join(lines) + "\n")
    ws.ingest("consent", path)


def queue(
    ws,
    customers: list[str],
    *,
    channel: str = "email",
    campaign: str = "spring",
    without_consent: tuple[str, ...] = (),
    **fields_for,
) -> list[int]:
    """One pending row per customer (consent recorded unless ``without_consent``); fields:
    first_name, the contact points and the offer, as ``campaign run`` freezes them."""
    consenting = [c for c in customers if c not in without_consent]
    if consenting:
        consent(ws, consenting, channel)
    with ws.ops.session() as session:
        found = session.scalar(select(Campaign).where(Campaign.name == campaign))
        if found is None:
            found = Campaign(name=campaign, status="running")
            session.add(found)
            session.flush()
        rows = []
        for cid in customers:
            key = message_key(campaign, cid, channel)
            fields = {
                "first_name": cid.title(),
                "email": f"{cid}@example.com",
                "phone": "+33612345678",
                "_offer": {"code": "SPRING10"},
            }
            fields.update(fields_for.get(cid, {}))
            rows.append(
                OutboxMessage(
                    campaign_id=found.id,
                    idempotency_key=key,
                    message_id=key,
                    customer_id=cid,
                    channel=channel,
                    variant="a",
                    template_name="hello",
                    template_version=1,
                    offer_code="SPRING10",
                    fields=fields,
                    not_before=datetime.now(UTC) - timedelta(seconds=1),
                )
            )
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def states(ws) -> dict[str, tuple[str, str]]:
    with ws.ops.session() as session:
        return {m.customer_id: (m.state, m.reason) for m in session.scalars(select(OutboxMessage))}


# -- email --------------------------------------------------------------------------------------
def drain(ws, **kwargs) -> list:
    """Run ``deliver`` until no message is pending, sending or deferred (retries come due fast)."""
    reports = []
    for _ in range(20):
        reports.append(ws.delivery.deliver(**kwargs))
        counts = ws.delivery.status()
        if not any(counts[s] for s in outbox.OPEN_STATES):
            return reports
        time.sleep(0.06)
    raise AssertionError(f"still open after 20 runs: {counts}")


def test_email_delivery_records_every_outcome_and_reuses_one_connection(ws, smtp):
    sink, _ = smtp
    customers = ["ann", "bounce1", "bob", "defer1", "cy"]
    queue(ws, customers, bounce1={"email": "bounce1@example.com"}, defer1={"email": "defer1@example.com"})
    first = ws.delivery.deliver()
    assert (first.failed, first.suppressed, first.retried) == (1, 1, 1)
    assert first.sent in (3, 4)  # the greylisted one is retried in this run once its backoff is over
    assert states(ws)["bounce1"] == ("failed", "5.1.1 No such user")  # the rest of the batch went on
    drain(ws)
    got = states(ws)
    assert {c for c, s in got.items() if s[0] == "sent"} == {"ann", "bob", "cy", "defer1"}
    with ws.ops.session() as session:
        [bounce] = session.scalars(select(Suppression)).all()
    assert (bounce.customer_id, bounce.kind, bounce.subject_hash) == (
        "bounce1",
        "hard_bounce",
        outbox.address_hash("email", "bounce1@example.com"),
    )
    ids = {rcpt: mid for _, rcpt, mid, _ in sink.received}
    assert len(sink.received) == 4
    for cid in ("ann", "bob", "cy", "defer1"):
        assert ids[f"{cid}@example.com"] == f"<{message_key('spring', cid, 'email')}@shop.example>"
    assert len({peer for *_, peer in sink.received[:3]}) == 1  # one SMTP connection for the batch
    [message] = ws.delivery.ledger("defer1").messages
    assert [(a.attempt, a.status, a.code) for a in message.attempts] == [
        (1, "temporary_failure", 451),
        (2, "sent", 250),
    ]
    with ws.ops.session() as session:
        assert session.scalar(select(Campaign.status)) == "finished"


def test_the_rendered_message_uses_the_frozen_fields_and_carries_the_unsubscribe_headers(ws, tmp_path):
    captured: list[bytes] = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            captured.append(envelope.content)
            return "250 OK"

    controller = Controller(Keep(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        ws.context.settings.channels.email.port = controller.port
        queue(ws, ["zoe"], zoe={"first_name": "Zoé"})
        assert ws.delivery.deliver().sent == 1
    finally:
        controller.stop()
    parsed = email.message_from_bytes(captured[0])
    assert str(email.header.make_header(email.header.decode_header(parsed["Subject"]))) == "Hello Zoé"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "http://127.0.0.1:8000/u/" in parsed["List-Unsubscribe"]
    text = (
        next(p for p in parsed.walk() if p.get_content_type() == "text/plain")
        .get_payload(decode=True)
        .decode()
    )
    assert "Hi Zoé, use SPRING10." in text and "/u/" in text


def test_an_unreachable_server_is_retried_with_backoff_then_failed_with_the_reason(ws):
    ws.context.settings.channels.email.port = free_port()  # nothing listens there
    queue(ws, ["ann", "bob"])
    reports = drain(ws)
    assert sum(r.retried for r in reports) == 4 and sum(r.failed for r in reports) == 2
    state, reason = states(ws)["ann"]
    assert state == "failed" and reason.startswith("gave up after 3 attempts: connect:")
    attempts = ws.delivery.ledger("ann").messages[0].attempts
    assert [a.status for a in attempts] == ["temporary_failure"] * 3
    assert all(later.at > earlier.at for earlier, later in zip(attempts, attempts[1:], strict=False))


# -- the policy and render seams ------------------------------------------------------------------
def test_the_policy_skips_and_defers_with_reasons_before_anything_is_rendered_or_sent(ws, smtp):
    sink, _ = smtp
    queue(ws, ["ann", "skip1", "night1"])
    rendered: list[str] = []
    tomorrow = datetime.now(UTC) + timedelta(hours=9)

    def policy(ctx, session, message, now):
        assert session.get(OutboxMessage, message.id).customer_id == message.customer_id
        if message.customer_id.startswith("skip"):
            return PolicyDecision(action="skip", reason="no email consent")
        if message.customer_id.startswith("night"):
            return PolicyDecision(
                action="defer", reason="quiet hours (21:00-08:00 Europe/Paris)", not_before=tomorrow
            )
        return PolicyDecision(action="send")

    def render(ctx, compiled, message, secret):
        rendered.append(message.customer_id)
        return render_frozen(ctx, compiled, message, secret)

    report = ws.delivery.deliver(policy=policy, render=render)
    assert (report.sent, report.skipped, report.deferred) == (1, 1, 1)
    assert rendered == ["ann"] and [r for _, r, _, _ in sink.received] == ["ann@example.com"]
    got = states(ws)
    assert got["skip1"] == ("skipped", "no email consent")
    assert got["night1"] == ("deferred", "quiet hours (21:00-08:00 Europe/Paris)")
    with ws.ops.session() as session:
        night = session.scalar(select(OutboxMessage).where(OutboxMessage.customer_id == "night1"))
    assert outbox.utc(night.not_before) == tomorrow
    assert ws.delivery.deliver(policy=policy, render=render).claimed == 0  # deferred: not due yet
    with ws.ops.session() as session:
        assert session.scalar(select(Campaign.status)) == "running"  # never finished while deferred


def test_the_default_policy_skips_without_consent_or_after_an_opt_out(ws, smtp):
    sink, _ = smtp
    queue(ws, ["ann", "bob", "cy"], without_consent=("bob",))
    consent(ws, ["cy"], "email", "opt_out")
    report = ws.delivery.deliver()
    assert (report.sent, report.skipped) == (1, 2)
    got = states(ws)
    assert got["bob"] == ("skipped", "no_consent: no email consent on record")
    assert got["cy"] == ("skipped", "no_consent: latest email consent is opt_out")
    assert [r for _, r, _, _ in sink.received] == ["ann@example.com"]
    assert [a.status for a in ws.delivery.ledger("bob").messages[0].attempts] == ["skipped"]


def test_the_default_policy_skips_imported_suppressions(ws, smtp, tmp_path):
    sink, _ = smtp
    export = tmp_path / "complaints.csv"
    export.write_text("recipient,event\nBOB@example.com,spam complaint\n")
    assert ws.delivery.suppress_import(export).added == 1
    queue(ws, ["ann", "bob"])
    report = ws.delivery.deliver()
    assert (report.sent, report.skipped) == (1, 1)
    assert states(ws)["bob"] == ("skipped", "suppressed: suppression list (complaint)")
    assert [r for _, r, _, _ in sink.received] == ["ann@example.com"]


def test_a_template_that_fails_to_render_fails_only_its_message(ws, smtp):
    ws.templates.add("broken", {"subject": "{{ customer.missing.deeper }}", "text": "x"})
    queue(ws, ["ann", "bob"])
    with ws.ops.session() as session:
        bob = session.scalar(select(OutboxMessage).where(OutboxMessage.customer_id == "bob"))
        bob.template_name = "broken"
    report = ws.delivery.deliver()
    assert (report.sent, report.failed) == (1, 1)
    state, reason = states(ws)["bob"]
    assert state == "failed" and reason.startswith("cannot build the message: template broken")


# -- rate limits --------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 500),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_the_token_bucket_never_exceeds_rate_times_time_plus_burst(rate, burst, gaps):
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    taken = []
    for gap in gaps:
        clock.now += gap
        bucket.take()
        taken.append(clock.now)
    for i, start in enumerate(taken):  # any window [start, end] holds ≤ burst + rate·(end - start)
        for j in range(i, len(taken)):
            assert j - i + 1 <= burst + rate * (taken[j] - start) + 1e-6
    idle = FakeClock()
    fresh = TokenBucket(rate, burst, clock=idle, sleep=idle.sleep)
    for _ in range(burst):
        fresh.take()
    assert idle.now == 0.0  # a full bucket serves a burst without waiting


def test_the_rate_limit_holds_on_the_wire(ws, smtp):
    sink, _ = smtp
    queue(ws, [f"c{i:02d}" for i in range(24)])
    report = ws.delivery.deliver(rate=40)
    assert report.sent == 24
    times = sorted(t for t, *_ in sink.received)
    assert times[-1] - times[0] >= (24 - 1) / 40 * 0.9
    for i in range(len(times)):  # no quarter second holds more than 1 + 40/4 messages
        assert sum(1 for t in times[i:] if t - times[i] < 0.25) <= 11


def test_the_email_rate_setting_paces_email(ws, smtp):
    sink, _ = smtp
    ws.context.settings.channels.email.rate_per_second = 50
    queue(ws, [f"c{i:02d}" for i in range(20)])
    started = time.monotonic()
    assert DeliveryWorker(ws.context).run().sent == 20
    assert time.monotonic() - started >= 19 / 50 * 0.9


# -- other channels -----------------------------------------------------------------------------
def test_webhook_and_sms_deliveries_are_signed_standard_webhooks(ws, receiver, monkeypatch):
    secret = generate_secret()
    monkeypatch.setenv("MICROMARKETING_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("MICROMARKETING_SMS_WEBHOOK_SECRET", secret)
    ws.context.settings.channels.webhook.url = receiver.url
    ws.context.settings.channels.sms.url = receiver.url
    queue(ws, ["ann"], channel="webhook")
    queue(ws, ["bob", "cy"], channel="sms", cy={"phone": "0612"})
    report = ws.delivery.deliver()
    assert (report.sent, report.failed) == (2, 1)
    assert states(ws)["cy"] == ("failed", "not an E.164 number: '0612'")
    hook = Webhook(secret)
    payloads = {}
    for headers, body in receiver.requests:
        payload = hook.verify(body, headers)
        payloads[headers["webhook-id"]] = payload
    assert set(payloads) == {message_key("spring", "ann", "webhook"), message_key("spring", "bob", "sms")}
    sms = payloads[message_key("spring", "bob", "sms")]["data"]
    assert (sms["to"], sms["body"], sms["segments"]) == ("+33612345678", "Hi Bob! Reply STOP to opt out", 1)


def test_direct_mail_and_audiences_are_written_into_exports(ws):
    address = {
        "last_name": "Martin",
        "address_line1": "1 rue de la Paix",
        "city": "Paris",
        "postal_code": "75002",
        "country": "FR",
    }
    queue(ws, ["ann", "bob"], channel="direct_mail", ann=address)
    queue(
        ws, ["cy", "dee"], channel="audience", without_consent=("dee",), cy={"email": "John_Smith@gmail.com"}
    )
    report = ws.delivery.deliver()
    assert (report.sent, report.failed, report.skipped) == (2, 1, 1)
    got = states(ws)
    assert got["bob"][0] == "failed" and got["bob"][1].startswith("missing last_name")
    assert got["dee"] == ("skipped", "no_consent: no ads consent on record")
    [mail_csv] = (ws.root / "exports" / "direct_mail").glob("*.csv")
    rows = list(csv.DictReader(mail_csv.open()))
    assert [(r["customer_id"], r["city"], r["offer_code"], r["variant"]) for r in rows] == [
        ("ann", "Paris", "SPRING10", "a")
    ]
    meta = next((ws.root / "exports" / "audience").glob("*-meta.csv")).read_text()
    assert "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f" in meta
    assert "john_smith" not in meta.lower()
    assert ws.delivery.ledger("cy").messages[0].attempts[0].reason.startswith("in ")


# -- several workers and the CLI ----------------------------------------------------------------
def test_two_workers_share_the_outbox_and_one_rate_without_sending_twice(ws, smtp):
    sink, _ = smtp
    ws.context.settings.channels.outbox.batch_size = 20
    customers = [f"c{i:03d}" for i in range(300)]
    queue(ws, customers)
    report = ws.delivery.deliver(workers=2, rate=300)
    assert report.workers == 2 and report.sent == 300
    assert report.seconds >= 299 / 300 * 0.9  # the rate holds for both workers together
    assert len({peer for *_, peer in sink.received}) == 2  # one SMTP connection each
    received = [r for _, r, _, _ in sink.received]
    assert sorted(received) == sorted(f"{c}@example.com" for c in customers)
    workers = {ws.delivery.ledger(c).messages[0].attempts[0].worker for c in customers}
    assert len(workers) == 2


def test_cli_deliver_ledger_and_suppress_import(ws, smtp, tmp_path):
    sink, port = smtp
    queue(ws, ["ann", "bounce2"], bounce2={"email": "bounce2@example.com"})
    runner = CliRunner()
    env = {"MICROMARKETING_WORKSPACE": str(ws.root), "MICROMARKETING_CHANNELS__EMAIL__PORT": str(port)}
    ws.close()
    result = runner.invoke(app, ["deliver", "--json"], env=env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["sent"], payload["failed"], payload["suppressed"]) == (1, 1, 1)
    assert payload["outbox"] == {
        "pending": 0,
        "sending": 0,
        "sent": 1,
        "deferred": 0,
        "failed": 1,
        "skipped": 0,
    }
    ledger = json.loads(runner.invoke(app, ["ledger", "bounce2", "--json"], env=env).stdout)
    [message] = ledger["messages"]
    assert message["state"] == "failed" and message["attempts"][0]["code"] == 550
    shown = runner.invoke(app, ["ledger", "ann"], env=env)
    assert shown.exit_code == 0 and "sent" in shown.stdout
    export = tmp_path / "bounces.csv"
    export.write_text("email,type\nx@example.com,hard bounce\n")
    imported = runner.invoke(app, ["suppress", "import", str(export)], env=env)
    assert imported.exit_code == 0 and "Suppressed 1 new" in imported.stdout
    missing = runner.invoke(app, ["suppress", "import", str(tmp_path / "nope.csv")], env=env)
    assert missing.exit_code == 2 and "cannot read suppression export" in missing.stderr
    bad = runner.invoke(app, ["deliver", "--workers", "0"], env=env)
    assert bad.exit_code == 2 and "--workers must be at least 1" in bad.stderr
