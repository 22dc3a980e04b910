"""The delivery worker: claim due outbox rows, ask the contact policy, render, send, record.

One worker loop (:class:`DeliveryWorker`) per thread or process; several share the outbox through
leases (:mod:`micromarketing.campaigns.outbox`).  For each claimed batch:

1. the **policy** (:func:`micromarketing.campaigns.policy.decide_many`: consent, suppressions,
   frequency caps, quiet hours) decides per message: send, skip (the reason is recorded) or
   defer (until ``not_before``, e.g. the end of the recipient's quiet hours);
2. the message is **rendered** from its frozen ingredients
   (:func:`micromarketing.campaigns.ingredients.render_frozen`), so a retry renders the
   identical message with the same ``message_id``;
3. it is **sent** through the channel for the row's channel — email over one SMTP connection
   kept for the worker's life, webhook and SMS over one httpx client, direct mail and ad
   audiences as files in the workspace's ``exports/`` directory — and each outcome is committed
   (one small transaction) in the channel's ``done`` callback, right after the server's answer
   and before the next message goes out, so a crash repeats at most the message in flight.
   With an SMTP server that offers PIPELINING a message costs one round trip.
   Rows are ``sending`` from the claim on, i.e. before any network call.

The policy reads the warehouse; a DuckDB warehouse admits one process at a time, so a worker
lets go of it after a batch's decisions whenever another process waits for it (several
``deliver`` processes on one PostgreSQL operations store take turns for the policy queries
and send in parallel).

SMTP 5xx adds a hard-bounce suppression and the rest of the batch proceeds; 4xx and lost
connections are retried with the ``[channels.retry]`` backoff (with jitter) up to its
``max_attempts``, then failed with the reason.  ``rate`` (messages/s) and ``[channels.email]
rate_per_second`` are enforced with token buckets.  Without ``follow`` the worker stops when
nothing is due; with it, it polls every ``[channels.outbox] poll_seconds``.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from micromarketing.campaigns import outbox
from micromarketing.campaigns.ingredients import render_frozen
from micromarketing.campaigns.outbox import Outcome
from micromarketing.campaigns.policy import CONTACT_FIELD, PolicyDecision, decide_many
from micromarketing.channels.audiences import AudienceContact, write_audience
from micromarketing.channels.base import Channel, DeliveryOutcome, OutgoingMessage
from micromarketing.channels.direct_mail import DirectMailChannel
from micromarketing.channels.email import EmailChannel
from micromarketing.channels.sms import SmsChannel
from micromarketing.channels.webhook import WebhookChannel
from micromarketing.config import Settings, secret_from_env
from micromarketing.errors import ConfigError, NotFoundError, TemplateError
from micromarketing.personalize.templates import (
    CompiledTemplate,
    RenderedMessage,
    compile_template,
    token_secret,
)
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext
from micromarketing.store.lock import others_waiting
from micromarketing.store.models import Campaign, OutboxMessage
from micromarketing.tokens import unsubscribe_url

#: Channels whose "send" writes a file: the batch is written, then its outcomes are recorded.
FILE_CHANNELS = ("direct_mail", "audience")


#: A per-message contact policy (the seam's shape: ``policy.decide``).
Policy = Callable[[StoreContext, Session, OutboxMessage, datetime], PolicyDecision]
#: Renders one row from its frozen ingredients with the token secret (the seam's shape:
#: ``ingredients.render_frozen``).
Render = Callable[[StoreContext, "CompiledTemplate | None", OutboxMessage, bytes], RenderedMessage]


def contact_point(message: OutboxMessage) -> str | None:
    """Where the row's message goes: the contact field the campaign froze (``email``, ``phone``),
    the customer id for webhooks (``webhook_to`` overrides it); None for file channels."""
    fields = message.fields or {}
    if message.channel in CONTACT_FIELD:
        return fields.get(CONTACT_FIELD[message.channel]) or None
    if message.channel == "webhook":
        return str(fields.get("webhook_to") or message.customer_id)
    return None


_ROUNDING = 1e-9


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of up to ``burst`` (thread-safe)."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst ≥ 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait until a token is available and take it."""
        with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1 - _ROUNDING:  # a float sum can stop short of 1 for ever
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                self._sleep((1 - self._tokens) / self.rate)


class DeliveryReport(BaseModel):
    """What one ``deliver`` run did (summed over its workers)."""

    workers: int = 1
    claimed: int = 0
    sent: int = 0
    retried: int = 0  # temporary failures deferred for a later attempt
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # deferred by the policy (quiet hours, …)
    suppressed: int = 0  # hard bounces added to the suppression list
    lost_leases: int = 0  # outcomes whose row another worker had taken over
    finished_campaigns: list[int] = []
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Messages sent per second of wall-clock time."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: DeliveryReport) -> None:
        """Sum ``other`` (another worker's report) into this one."""
        for name in (
            "claimed",
            "sent",
            "retried",
            "failed",
            "skipped",
            "deferred",
            "suppressed",
            "lost_leases",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finished_campaigns = sorted({*self.finished_campaigns, *other.finished_campaigns})


class _Channels:
    """The network channels of one worker, opened on first use and kept for its life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._open: dict[str, Channel] = {}

    def get(self, kind: str) -> Channel:
        if kind not in self._open:
            self._open[kind] = self._make(kind)
        return self._open[kind]

    def _make(self, kind: str) -> Channel:
        s = self.settings.channels
        if kind == "email":  # the worker paces email itself (token bucket)
            return EmailChannel(s.email.model_copy(update={"rate_per_second": None}))
        if kind == "webhook":
            if not s.webhook.url:
                raise ConfigError("channels.webhook.url is not set; webhook messages cannot be sent")
            return WebhookChannel(
                s.webhook.url,
                secret_from_env(s.webhook.secret_env, required=True) or "",
                timeout_seconds=s.webhook.timeout_seconds,
            )
        if kind == "sms":
            if not s.sms.url:
                raise ConfigError("channels.sms.url is not set; SMS messages cannot be sent")
            hook = WebhookChannel(
                s.sms.url,
                secret_from_env(s.sms.secret_env, required=True) or "",
                timeout_seconds=s.sms.timeout_seconds,
            )
            return SmsChannel(hook, sender_id=s.sms.sender_id)
        raise ConfigError(f"unknown channel {kind!r} in the outbox")

    def close(self) -> None:
        for channel in self._open.values():
            channel.close()
        self._open.clear()


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class DeliveryWorker:
    """One worker loop over the shared outbox (see the module docstring).

    ``policy`` None is the campaigns' contact policy decided a batch at a time
    (``policy.decide_many``: one query per rule); a per-message ``policy`` replaces it.
    ``campaign_id`` limits the worker to one campaign's messages.  Workers that run as threads
    of one process share ``buckets`` (so a rate holds for all of them) and ``policy_lock`` (the
    policy reads the warehouse, whose one DuckDB connection serves one query at a time)."""

    def __init__(
        self,
        ctx: StoreContext,
        *,
        policy: Policy | None = None,
        render: Render = render_frozen,
        rate: float | None = None,
        campaign_id: int | None = None,
        buckets: dict[str | None, TokenBucket] | None = None,
        policy_lock: threading.Lock | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ctx = ctx
        self.policy, self.render = policy, render
        self.campaign_id = campaign_id
        self.policy_lock = policy_lock or threading.Lock()
        self.name = name or _worker_name()
        self.rng = rng or random.Random()
        self.clock = clock
        settings = ctx.settings
        self.options = settings.channels.outbox
        self.retry = settings.channels.retry
        self.lease = timedelta(seconds=self.options.lease_seconds)
        self.buckets = buckets if buckets is not None else rate_buckets(settings, rate)
        self.channels = _Channels(settings)
        self._templates: dict[tuple[str, int | None], CompiledTemplate | TemplateError] = {}
        self._public_url = settings.server.public_url
        self._secret: bytes | None = None
        self._conn: Connection | None = None  # kept for the worker's life: one commit per outcome
        self.report = DeliveryReport()

    # -- the loop -----------------------------------------------------------------------------
    def run(
        self,
        *,
        follow: bool = False,
        stop: Callable[[], bool] = lambda: False,
        progress: ProgressCallback = noop_progress,
    ) -> DeliveryReport:
        """Deliver batches until nothing is due (or, with ``follow``, until ``stop()``)."""
        started = time.perf_counter()
        done = 0
        total = outbox.state_counts(self.ctx)["pending"]
        try:
            while not stop():
                batch = outbox.claim(
                    self.ctx, self.name, self._batch_size(), self.lease, self.clock(), self.campaign_id
                )
                if not batch:
                    if not follow:
                        break
                    with self.policy_lock:  # idle: let other commands use the warehouse
                        self.ctx.warehouse.close()
                    time.sleep(self.options.poll_seconds)
                    continue
                self.report.claimed += len(batch)
                self._deliver_batch(batch)
                done += len(batch)
                progress("deliver", done, total)
        finally:
            self.channels.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self.report.seconds = time.perf_counter() - started
        return self.report

    def _batch_size(self) -> int:
        """No larger than a quarter of the lease's worth of sends at the slowest rate."""
        size = self.options.batch_size
        rates = [b.rate for b in self.buckets.values()]
        if rates:
            size = min(size, max(1, int(min(rates) * self.options.lease_seconds / 4)))
        return size

    def _deliver_batch(self, batch: list[OutboxMessage]) -> None:
        now = self.clock()
        decided: list[tuple[OutboxMessage, Outcome]] = []
        to_send: list[tuple[OutboxMessage, OutgoingMessage]] = []
        with self.policy_lock, self.ctx.ops.session() as session:
            if self.policy is None:
                decisions: list[PolicyDecision] = decide_many(self.ctx, session, batch, now)
            else:
                decisions = [self.policy(self.ctx, session, m, now) for m in batch]
            warehouse = self.ctx.warehouse
            if warehouse.backend_name == "duckdb" and others_waiting(warehouse.path):
                warehouse.close()  # another process (a second `deliver`) waits for the file
        for message, decision in zip(batch, decisions, strict=True):
            if decision.action == "skip":
                decided.append((message, Outcome("skipped", decision.reason)))
            elif decision.action == "defer":
                decided.append(
                    (message, Outcome("deferred", decision.reason, not_before=decision.not_before))
                )
            else:
                try:
                    to_send.append((message, self._outgoing(message)))
                except (TemplateError, ValueError, ValidationError) as exc:
                    decided.append(
                        (message, Outcome("permanent_failure", f"cannot build the message: {exc}"))
                    )
        self._record_all(decided)
        claimed_at = time.monotonic()
        for kind in FILE_CHANNELS:
            group = [(m, o) for m, o in to_send if m.channel == kind]
            if group:
                self._write_files(kind, group)
        network = [(m, o) for m, o in to_send if m.channel not in FILE_CHANNELS]
        for kind in dict.fromkeys(m.channel for m, _ in network):
            self._send(kind, [(m, o) for m, o in network if m.channel == kind], network, claimed_at)
        self.report.finished_campaigns = sorted(
            {
                *self.report.finished_campaigns,
                *outbox.finish_campaigns(self.ctx, {m.campaign_id for m in batch}),
            }
        )

    # -- building and sending -------------------------------------------------------------------
    def _template(self, message: OutboxMessage) -> CompiledTemplate | None:
        if not message.template_name:
            return None
        key = (message.template_name, message.template_version)
        if key not in self._templates:
            try:
                self._templates[key] = compile_template(self.ctx, *key)
            except TemplateError as exc:
                self._templates[key] = exc
        found = self._templates[key]
        if isinstance(found, TemplateError):
            raise found
        return found

    def _outgoing(self, message: OutboxMessage) -> OutgoingMessage:
        """The channel message for ``message``: rendered, addressed, with its unsubscribe link."""
        if self._secret is None:
            self._secret = token_secret(self.ctx)
        rendered = self.render(self.ctx, self._template(message), message, self._secret)
        to = contact_point(message)
        if to is None and message.channel not in FILE_CHANNELS:
            field = "email" if message.channel == "email" else "phone"
            raise ValueError(f"the outbox row has no {field!r} field to send to")
        link = (
            None
            if message.transactional
            else unsubscribe_url(self._public_url, self._secret, message.customer_id)
        )
        return OutgoingMessage(
            message_id=message.message_id,
            customer_id=message.customer_id,
            channel=message.channel,  # type: ignore[arg-type]
            to=to or message.customer_id,
            subject=rendered.subject or "",
            text=rendered.text or "",
            html=rendered.html,
            sms=rendered.sms,
            unsubscribe_url=link,
            metadata=dict(message.fields or {}) if message.channel in FILE_CHANNELS else {},
            campaign_id=str(message.campaign_id) if message.campaign_id is not None else None,
            variant=message.variant,
            offer_code=message.offer_code,
            transactional=message.transactional,
        )

    def _send(
        self,
        kind: str,
        group: list[tuple[OutboxMessage, OutgoingMessage]],
        network: list[tuple[OutboxMessage, OutgoingMessage]],
        claimed_at: float,
    ) -> None:
        """Send ``group`` (one channel's messages of the batch) and commit each outcome as the
        channel reports it, before the next message goes out; the rate buckets and the lease
        renewal (of the batch's ``network`` rows still held) run as the channel pulls messages."""
        rows = {id(o): m for m, o in group}
        recorded: set[int] = set()
        renewed_at = claimed_at

        def paced() -> Iterator[OutgoingMessage]:
            nonlocal renewed_at
            for _, outgoing in group:
                if time.monotonic() - renewed_at > self.lease.total_seconds() / 2:
                    held = [m.id for m, _ in network if m.id not in recorded]
                    outbox.renew_lease(self.ctx, self.name, held, self.lease, self.clock())
                    renewed_at = time.monotonic()
                for key in (None, kind):
                    bucket = self.buckets.get(key)
                    if bucket is not None:
                        bucket.take()
                yield outgoing

        def done(outgoing: OutgoingMessage, result: DeliveryOutcome) -> None:
            message = rows[id(outgoing)]
            self._record_all([(message, _outcome(result, outgoing))])
            recorded.add(message.id)

        try:
            self.channels.get(kind).send_batch(paced(), done=done)
        except ConfigError as exc:  # raised before anything was sent
            self._record_all(
                [(m, Outcome("permanent_failure", str(exc))) for m, _ in group if m.id not in recorded]
            )

    def _write_files(self, kind: str, group: list[tuple[OutboxMessage, OutgoingMessage]]) -> None:
        """Write one file set for this batch's ``kind`` messages, then record them all sent."""
        first = group[0][0]
        stem = f"{first.campaign_id or 'none'}-{first.id}-{self.name.replace(':', '_')}"
        folder = self.ctx.root / "exports" / kind
        if kind == "direct_mail":
            channel = DirectMailChannel(folder / f"{stem}.csv", folder / f"{stem}.parquet")
            results = channel.send_batch([o for _, o in group])
            channel.close()
            outcomes = [_outcome(r, o) for r, (_, o) in zip(results, group, strict=True)]
        else:
            outcomes = self._write_audiences(folder, stem, group)
        self._record_all([(m, oc) for (m, _), oc in zip(group, outcomes, strict=True)])

    def _write_audiences(
        self, folder: Path, stem: str, group: list[tuple[OutboxMessage, OutgoingMessage]]
    ) -> list[Outcome]:
        """Google and Meta customer-list files (ad consent was checked by the policy)."""
        names = set(AudienceContact.model_fields) - {"customer_id", "ad_consent"}
        contacts = [
            AudienceContact(
                customer_id=m.customer_id,
                ad_consent=True,
                **{k: v for k, v in (m.fields or {}).items() if k in names},
            )
            for m, _ in group
        ]
        country = self.ctx.settings.channels.sms.default_country_code
        exports = [
            write_audience(
                contacts, platform, folder / f"{stem}-{platform}.csv", default_country_code=country
            )
            for platform in ("google", "meta")
        ]
        included = set(exports[0].customer_ids) | set(exports[1].customer_ids)
        files = ", ".join(Path(e.path).name for e in exports)
        return [
            Outcome("sent", f"in {files}")
            if c.customer_id in included
            else Outcome("skipped", "no matchable identifier (email, phone or name and address)")
            for c in contacts
        ]

    def _record_all(self, outcomes: list[tuple[OutboxMessage, Outcome]]) -> None:
        if not outcomes:
            return
        now = self.clock()
        if self._conn is None:
            self._conn = self.ctx.ops.engine.connect()
        with outbox.write_transaction(self.ctx, self._conn) as conn:
            for message, outcome in outcomes:
                recorded = outbox.record(
                    conn, message, outcome, worker=self.name, retry=self.retry, rng=self.rng, now=now
                )
                self._count(outcome, recorded)

    def _count(self, outcome: Outcome, recorded: outbox.Recorded) -> None:
        r = self.report
        if not recorded.owned:
            r.lost_leases += 1
        if recorded.state == "sent":
            r.sent += 1
        elif recorded.state == "failed":
            r.failed += 1
        elif recorded.state == "skipped":
            r.skipped += 1
        elif outcome.status == "temporary_failure":
            r.retried += 1
        else:
            r.deferred += 1
        if outcome.suppress_address:
            r.suppressed += 1


def _outcome(result: DeliveryOutcome, outgoing: OutgoingMessage) -> Outcome:
    """A channel's :class:`DeliveryOutcome` as the outbox records it."""
    if result.status == "sent":
        return Outcome("sent", result.reason, result.code)
    if result.status == "temporary_failure":
        return Outcome("temporary_failure", result.reason, result.code)
    suppress = outgoing.to if result.suppress else None
    return Outcome("permanent_failure", result.reason, result.code, suppress_address=suppress)


def rate_buckets(settings: Settings, rate: float | None) -> dict[str | None, TokenBucket]:
    """The token buckets a worker (or a pool of worker threads) paces sends with: ``rate`` for
    every network send (key None) and ``[channels.email] rate_per_second`` for email."""
    buckets: dict[str | None, TokenBucket] = {}
    if rate:
        buckets[None] = TokenBucket(rate)
    if settings.channels.email.rate_per_second:
        buckets["email"] = TokenBucket(settings.channels.email.rate_per_second)
    return buckets


def campaign_id_of(ctx: StoreContext, name: str) -> int:
    """The id of campaign ``name`` (NotFoundError when there is none)."""
    with ctx.ops.session() as session:
        found = session.scalar(select(Campaign.id).where(Campaign.name == name))
    if found is None:
        raise NotFoundError(f"no campaign named {name!r} (see `micromarketing campaign list`)")
    return found


def deliver(
    ctx: StoreContext,
    *,
    workers: int = 1,
    rate: float | None = None,
    follow: bool = False,
    campaign: str | None = None,
    policy: Policy | None = None,
    render: Render = render_frozen,
    progress: ProgressCallback = noop_progress,
    stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DeliveryReport:
    """Send everything due (only ``campaign``'s messages when given) with ``workers`` worker
    loops under one ``rate`` (messages/s); ``clock`` is the time the policy and the records see
    (a simulation, such as the demo, runs on its own clock).

    The workers are threads of this process, each with its own SMTP connection and
    operations-store connection, sharing the outbox through leases like separate processes
    would (several ``deliver`` commands may run at once, e.g. on PostgreSQL); they overlap the
    waits for the SMTP server's replies.  The warehouse is released when the run ends."""
    if workers < 1:
        raise ValueError("workers must be ≥ 1")
    campaign_id = campaign_id_of(ctx, campaign) if campaign is not None else None
    buckets, lock = rate_buckets(ctx.settings, rate), threading.Lock()
    total = outbox.state_counts(ctx, campaign_id)["pending"]
    progress_lock = threading.Lock()

    def report_progress(step: str, _done: int, _total: int) -> None:
        with progress_lock:  # the workers' claims together
            done = sum(w.report.claimed for w in pool)
            progress(step, done, max(total, done))

    pool = [
        DeliveryWorker(
            ctx,
            policy=policy,
            render=render,
            campaign_id=campaign_id,
            buckets=buckets,
            policy_lock=lock,
            clock=clock,
        )
        for _ in range(workers)
    ]
    started = time.perf_counter()
    try:
        if workers == 1:
            return pool[0].run(follow=follow, stop=stop, progress=report_progress)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as executor:
            futures = [
                executor.submit(w.run, follow=follow, stop=stop, progress=report_progress) for w in pool
            ]
            report = DeliveryReport(workers=workers)
            for future in futures:
                report.add(future.result())
        report.seconds = time.perf_counter() - started
        return report
    finally:
        ctx.warehouse.close()
