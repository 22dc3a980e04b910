"""The one contact policy: consent, suppressions, frequency caps and quiet hours.

The same rules run in two places:

* at plan and run time, vectorised over a segment's members (:func:`evaluate_members`), to count
  what each rule removes and to write skipped/deferred outbox rows with their reason;
* at send time, per message, by the delivery worker (:func:`decide`, or :func:`decide_many` for
  a batch with one query per rule), because consent, suppressions and other campaigns' sends
  change between the run and the send.

Rules, in order (the first that applies decides):

1. ``no_consent`` — the marketing consent in force at the moment decided (plan time, send
   time; :mod:`micromarketing.privacy.consent`, the one reader of the ledger: per customer and
   channel the latest record still valid then, ``opt_out`` on a tie) for the message's consent
   channel is not ``opt_in``, or there is none (a pause from the preference centre is an
   ``opt_out`` until its end, so it stops messages here and lapses by itself); or the campaign
   has a ``topic`` and the person's choice in force for that topic on the channel is ``opt_out``
   (they left it in the preference centre; no record means the topic goes with the channel).
2. ``suppressed`` — a row of the ``suppressions`` ops table for the customer, or for the
   message's address (``subject_hash`` = :func:`address_hash`, as ``suppress import`` stores
   provider exports), on any channel (``channel`` NULL) or this one.
3. ``frequency_cap`` — the person already has N marketing messages on this channel in the last D
   local calendar days (``[policy] frequency_cap = "N/Dd"``), counted from outbox rows that are
   ``sent`` (by ``sent_at``) or ``sending``.  When caps collide the campaign ``priority`` decides:
   a message in flight or due from a higher-priority campaign (same priority: the older row)
   counts first, and a message it displaces is deferred until that one is settled.
4. ``quiet_hours`` — the recipient's local time (``customers.timezone``, else ``[policy]
   timezone``) is inside ``[policy] quiet_hours``: deferred to the window's end, never dropped.

Transactional messages are exempt from consent, caps, quiet hours and marketing unsubscribes (a
suppression of kind ``unsubscribe``); hard bounces, complaints and erasures still stop them.
Test messages (``is_test``) are outside the policy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from micromarketing.config import PolicySettings
from micromarketing.privacy.consent import consent_in_force, statuses_in_force
from micromarketing.store.context import StoreContext
from micromarketing.store.models import OutboxMessage, Suppression

Action = Literal["send", "skip", "defer"]
RULES: tuple[str, ...] = ("no_consent", "suppressed", "frequency_cap", "quiet_hours")
#: The consent-ledger channel that governs each delivery channel.
CONSENT_CHANNEL: dict[str, str] = {
    "email": "email",
    "sms": "sms",
    "webhook": "push",
    "direct_mail": "post",
    "audience": "ads",
}
#: Outbox ``fields`` keys the policy reads (written by :mod:`micromarketing.campaigns.ingredients`).
TZ_FIELD = "_tz"
WINDOW_END_FIELD = "_window_end"
TOPIC_FIELD = "_topic"
#: The ``fields`` key holding each channel's contact point (the delivery worker reads it too).
CONTACT_FIELD: dict[str, str] = {"email": "email", "sms": "phone"}
COUNTED_STATES = ("sent", "sending")
WAITING_STATES = ("pending", "deferred")
#: How long a message displaced by a higher-priority one waits before it is decided again.
DISPLACED_WAIT = timedelta(minutes=10)
MARKETING_UNSUBSCRIBE = "unsubscribe"


class PolicyDecision(BaseModel):
    """What the policy says about one message now: send it, skip it (with the rule) or defer it
    until ``not_before``."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str = ""
    not_before: datetime | None = None

    @property
    def rule(self) -> str:
        """The rule that decided (``no_consent``, ``suppressed``, ...; empty for a send)."""
        return self.reason.partition(":")[0] if self.action != "send" else ""


SEND = PolicyDecision(action="send")


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuietHours:
    """A local-time window ``[start, end)``; ``start > end`` crosses midnight."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        """Whether wall-clock time ``local`` is inside the window."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``messages`` per person and channel in the last ``days`` local calendar days."""

    messages: int
    days: int


_CAP = re.compile(r"^(\d+)/(\d+)d$")


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``"21:00-08:00"`` -> QuietHours; ``""`` -> None (off)."""
    if not text:
        return None
    start, _, end = text.partition("-")
    return QuietHours(time.fromisoformat(start), time.fromisoformat(end))


def parse_frequency_cap(text: str) -> FrequencyCap | None:
    """``"2/7d"`` -> FrequencyCap(2, 7); ``""`` -> None (off)."""
    if not text:
        return None
    match = _CAP.match(text)
    if not match:
        raise ValueError(f"frequency cap {text!r}: expected 'N/Dd', e.g. '2/7d'")
    return FrequencyCap(int(match.group(1)), int(match.group(2)))


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The IANA zone ``name``, else ``default`` (an unknown or empty name falls back)."""
    if name:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


# ---------------------------------------------------------------------------------------------
# time arithmetic in the recipient's zone
# ---------------------------------------------------------------------------------------------
def _local_instant(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first UTC instant whose wall-clock time in ``tz`` is at or after ``at`` on ``day``'s date.

    Usually the instant of that wall-clock time (the first one when a DST fall-back repeats it).
    A time skipped by a spring-forward jump (02:30 when clocks go from 02:00 to 03:00) maps to
    the moment the clock resumes (03:00), found by bisection between the two readings of the gap.
    """
    naive = datetime.combine(day.date(), at)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # reads before the gap
    high = early  # reads after the gap
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0) if high.astimezone(tz).replace(tzinfo=None) >= naive else high


def quiet_until(now: datetime, tz: ZoneInfo, window: QuietHours | None) -> datetime | None:
    """When the quiet window ``now`` falls in ends (UTC), or None when ``now`` is not quiet."""
    if window is None:
        return None
    local = now.astimezone(tz)
    if not window.contains(local.time().replace(tzinfo=None)):
        return None
    day = local.replace(tzinfo=None)
    end = _local_instant(day, window.end, tz)
    if end <= now:
        end = _local_instant(day + timedelta(days=1), window.end, tz)
    return end


def cap_window_start(now: datetime, tz: ZoneInfo, days: int) -> datetime:
    """Local midnight ``days - 1`` days before ``now``'s local date, as UTC (the cap's window)."""
    local = now.astimezone(tz).replace(tzinfo=None)
    first = datetime.combine((local - timedelta(days=days - 1)).date(), time(0))
    return _local_instant(first, time(0), tz)


# ---------------------------------------------------------------------------------------------
# the ledgers
# ---------------------------------------------------------------------------------------------
def latest_consent(
    ctx: StoreContext, channel: str, customer_ids: Sequence[str] | None = None, *, at: datetime | None = None
) -> pd.DataFrame:
    """``customer_id, status`` of the marketing consent in force at ``at`` (default now) per
    customer on consent ``channel``."""
    return consent_in_force(ctx, [channel], customer_ids, at=at).select("customer_id", "status").to_pandas()


def address_hash(channel: str, address: str) -> str:
    """The ``subject_hash`` a suppression stores for a contact point: SHA-256 hex of
    ``"{channel}:{address}"``, trimmed and lowercased (the same as the outbox's ``address_hash``)."""
    return hashlib.sha256(f"{channel}:{address.strip().lower()}".encode()).hexdigest()


def suppressions_for(
    session: Session,
    channel: str,
    transactional: bool,
    customer_ids: Sequence[str] | None = None,
    hashes: Sequence[str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Suppressions that stop a message on ``channel``: (customer id -> kind, address hash -> kind).

    With ``customer_ids``/``hashes`` only those are looked up; without, the whole list is read."""
    q = (
        select(Suppression.customer_id, Suppression.subject_hash, Suppression.kind)
        .where(or_(Suppression.channel.is_(None), Suppression.channel == channel))
        .order_by(Suppression.id)  # the oldest names the kind, as at send time
    )
    if transactional:
        q = q.where(Suppression.kind != MARKETING_UNSUBSCRIBE)
    if customer_ids is not None or hashes is not None:
        q = q.where(
            or_(
                Suppression.customer_id.in_(list(customer_ids or ())),
                Suppression.subject_hash.in_(list(hashes or ())),
            )
        )
    by_customer: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    for cid, subject_hash, kind in session.execute(q):
        if cid is not None:
            by_customer.setdefault(cid, kind)
        if subject_hash is not None:
            by_hash.setdefault(subject_hash, kind)
    return by_customer, by_hash


def _marketing(q):  # type: ignore[no-untyped-def]
    return q.where(OutboxMessage.is_test.is_(False), OutboxMessage.transactional.is_(False))


# ---------------------------------------------------------------------------------------------
# plan / run time: vectorised over members
# ---------------------------------------------------------------------------------------------
def evaluate_members(
    ctx: StoreContext,
    members: pd.DataFrame,
    *,
    channel: str,
    when: datetime,
    priority: int = 0,
    campaign_id: int | None = None,
    transactional: bool = False,
    topic: str | None = None,
    policy: PolicySettings | None = None,
) -> pd.DataFrame:
    """The policy's verdict for each member (``customer_id``, optional ``timezone``) at ``when``
    for a message on ``channel`` (of the campaign's ``topic``, if it has one).

    Returns ``customer_id``, ``outcome`` (``send`` or a rule of :data:`RULES`), ``reason`` and
    ``not_before`` (UTC datetimes; ``when`` unless quiet hours defer it).  Messages of other campaigns
    already in the outbox with a higher priority (or the same priority, written earlier) count
    against the cap as if sent.
    """
    policy = policy or ctx.settings.policy
    n = len(members)
    ids = members["customer_id"].astype(str).to_numpy()
    zones = (
        members["timezone"].where(members["timezone"].notna(), None).to_numpy()
        if "timezone" in members
        else np.full(n, None, dtype=object)
    )
    zones = np.array([z or policy.timezone for z in zones], dtype=object)
    outcome = np.full(n, "send", dtype=object)
    reason = np.full(n, "", dtype=object)
    not_before = np.full(n, when.astimezone(UTC), dtype=object)  # datetimes, not Timestamps

    def apply(mask: np.ndarray, rule: str, why: np.ndarray | str) -> None:
        todo = mask & (outcome == "send")
        outcome[todo] = rule
        reason[todo] = (
            f"{rule}: " + why if isinstance(why, str) else np.char.add(f"{rule}: ", why[todo].astype(str))
        )

    consent_channel = CONSENT_CHANNEL[channel]
    if not transactional:
        consent = latest_consent(ctx, consent_channel, at=when)
        status = dict(zip(consent["customer_id"], consent["status"], strict=True))
        got = np.array([status.get(c) for c in ids], dtype=object)
        apply(got == None, "no_consent", f"no {consent_channel} consent on record")  # noqa: E711
        apply(got == "opt_out", "no_consent", f"latest {consent_channel} consent is opt_out")
        if topic is not None:
            left = consent_in_force(ctx, [consent_channel], purpose=topic, at=when).to_pandas()
            left = set(left.loc[left["status"] == "opt_out", "customer_id"])
            apply(np.isin(ids, list(left)), "no_consent", _left_topic(topic, consent_channel))
    with ctx.ops.session() as session:
        by_customer, by_hash = suppressions_for(session, channel, transactional)
        kinds = np.array([by_customer.get(c, "") for c in ids], dtype=object)
        if by_hash and "address" in members:
            addresses = members["address"].to_numpy()
            for i, address in enumerate(addresses):
                if not kinds[i] and isinstance(address, str) and address:
                    kinds[i] = by_hash.get(address_hash(channel, address), "")
        apply(
            kinds != "", "suppressed", np.char.add("suppression list (", np.char.add(kinds.astype(str), ")"))
        )
        cap = parse_frequency_cap(policy.frequency_cap)
        if cap is not None and not transactional:
            used = _cap_usage(session, ids, zones, channel, when, cap, priority, campaign_id)
            apply(
                used >= cap.messages, "frequency_cap", f"{cap.messages} per {cap.days}d reached on {channel}"
            )
    window = parse_quiet_hours(policy.quiet_hours)
    if window is not None and not transactional:
        until = {z: quiet_until(when, zone(z, policy.timezone), window) for z in set(zones)}
        ends = np.array([until[z] for z in zones], dtype=object)
        quiet = np.array([e is not None for e in ends], dtype=bool)
        apply(quiet, "quiet_hours", f"deferred to the end of quiet hours {policy.quiet_hours} local time")
        deferred = quiet & (outcome == "quiet_hours")
        if deferred.any():
            not_before[deferred] = ends[deferred]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "outcome": outcome,
            "reason": reason,
            "not_before": pd.Series(not_before, dtype=object),  # datetimes, no datetime64 inference
        }
    )


def _cap_usage(
    session: Session,
    ids: np.ndarray,
    zones: np.ndarray,
    channel: str,
    when: datetime,
    cap: FrequencyCap,
    priority: int,
    campaign_id: int | None,
) -> np.ndarray:
    """Messages counted against each member's cap at ``when`` (sent in the local window, in
    flight, or waiting in a campaign that outranks this one)."""
    starts = {z: cap_window_start(when, zone(z), cap.days) for z in set(zones)}
    earliest = min(starts.values(), default=when)
    counted = _marketing(
        select(OutboxMessage.customer_id, OutboxMessage.state, OutboxMessage.sent_at).where(
            OutboxMessage.channel == channel,
            or_(
                and_(OutboxMessage.state == "sent", OutboxMessage.sent_at >= earliest),
                OutboxMessage.state == "sending",
                and_(OutboxMessage.state.in_(WAITING_STATES), OutboxMessage.priority >= priority),
            ),
        )
    )
    if campaign_id is not None:
        counted = counted.where(
            or_(OutboxMessage.campaign_id.is_(None), OutboxMessage.campaign_id != campaign_id)
        )
    rows = session.execute(counted).all()
    if not rows:
        return np.zeros(len(ids), dtype=int)
    zone_of = dict(zip(ids.tolist(), zones.tolist(), strict=True))
    counts: dict[str, int] = {}
    for cid, state, sent_at in rows:
        z = zone_of.get(cid)
        if z is None:
            continue
        if state == "sent" and _aware(sent_at) < starts[z]:
            continue
        counts[cid] = counts.get(cid, 0) + 1
    return np.array([counts.get(c, 0) for c in ids.tolist()], dtype=int)


def _aware(value: datetime | None) -> datetime:
    """SQLite hands back naive datetimes for ``DateTime(timezone=True)``: they are UTC."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# send time: the seam the delivery worker calls
# ---------------------------------------------------------------------------------------------
def decide(ctx: StoreContext, session: Session, message: OutboxMessage, now: datetime) -> PolicyDecision:
    """The policy's decision for one outbox ``message`` at ``now`` (the worker's send-time check).

    ``session`` is the worker's operations-store session (suppressions and the outbox are read
    through it).  See :func:`decide_many` to decide a batch at the cost of one."""
    return decide_many(ctx, session, [message], now)[0]


def decide_many(
    ctx: StoreContext, session: Session, messages: Sequence[OutboxMessage], now: datetime
) -> list[PolicyDecision]:
    """:func:`decide` for each of ``messages`` (one decision per message, in order).

    A batch costs the same few queries whatever its size and mix of channels: one for consent,
    one for suppressions, one for frequency-cap usage and one for the time zones not frozen on
    the rows; on DuckDB the warehouse ones are parameterised SQL, so nothing is compiled per batch.
    """
    policy = ctx.settings.policy
    now = _aware(now).astimezone(UTC)
    decisions: list[PolicyDecision] = [SEND] * len(messages)
    todo: list[int] = []
    for i, m in enumerate(messages):
        window_end = (m.fields or {}).get(WINDOW_END_FIELD)
        if m.is_test:
            decisions[i] = PolicyDecision(action="send", reason="test message: outside the contact policy")
        elif window_end and now > _aware(datetime.fromisoformat(window_end)):
            decisions[i] = PolicyDecision(action="skip", reason=f"send_window: closed at {window_end}")
        else:
            todo.append(i)
    if not todo:
        return decisions
    batch = [messages[i] for i in todo]
    marketing = [m for m in batch if not m.transactional]
    zones = _zones_of(ctx, batch, policy.timezone)
    consent = statuses_in_force(ctx, {(_consent_channel(m), m.customer_id) for m in marketing}, at=now)
    topics: dict[str, set[tuple[str, str]]] = {}
    for m in marketing:
        if _topic_of(m):
            topics.setdefault(_topic_of(m), set()).add((_consent_channel(m), m.customer_id))
    left = {
        (topic, channel, cid)
        for topic, wanted in topics.items()
        for (channel, cid), status in statuses_in_force(ctx, wanted, purpose=topic, at=now).items()
        if status == "opt_out"
    }
    hashes = [_address_hash_of(m) for m in batch]
    suppressions = _Suppressions.read(session, {m.customer_id for m in batch}, {h for h in hashes if h})
    cap = parse_frequency_cap(policy.frequency_cap)
    usage = (
        _CapUsage.read(
            session,
            marketing,
            now,
            {id(m): cap_window_start(now, zones[id(m)], cap.days) for m in marketing},
        )
        if cap is not None and marketing
        else None
    )
    window = parse_quiet_hours(policy.quiet_hours)
    for i, m, address in zip(todo, batch, hashes, strict=True):
        decisions[i] = _decide_one(
            m,
            now,
            zones[id(m)],
            consent.get((_consent_channel(m), m.customer_id)),
            (_topic_of(m), _consent_channel(m), m.customer_id) in left,
            suppressions.kind(m, address),
            None if m.transactional or usage is None else usage.of(m),
            cap,
            window,
            policy,
        )
    return decisions


def _decide_one(
    m: OutboxMessage,
    now: datetime,
    tz: ZoneInfo,
    consent: str | None,
    left_topic: bool,
    suppressed: str | None,
    usage: tuple[int, int] | None,
    cap: FrequencyCap | None,
    window: QuietHours | None,
    policy: PolicySettings,
) -> PolicyDecision:
    """The first rule that applies to ``m``, given what the batch's queries found for it:
    its latest ``consent`` status, whether it ``left_topic`` (the campaign's), the ``suppressed``
    kind, and ``usage`` = (counted against its
    cap, outranking messages due and waiting) or None when no cap applies."""
    if m.transactional:
        if suppressed:
            return PolicyDecision(action="skip", reason=f"suppressed: suppression list ({suppressed})")
        return PolicyDecision(
            action="send", reason="transactional: exempt from consent, caps, quiet hours and unsubscribes"
        )
    if consent is None:
        return PolicyDecision(action="skip", reason=f"no_consent: no {_consent_channel(m)} consent on record")
    if consent != "opt_in":
        return PolicyDecision(
            action="skip", reason=f"no_consent: latest {_consent_channel(m)} consent is {consent}"
        )
    if left_topic:
        reason = _left_topic(_topic_of(m), _consent_channel(m))
        return PolicyDecision(action="skip", reason=f"no_consent: {reason}")
    if suppressed:
        return PolicyDecision(action="skip", reason=f"suppressed: suppression list ({suppressed})")
    if cap is not None and usage is not None:
        sent, ahead = usage
        if sent >= cap.messages:
            return PolicyDecision(
                action="skip", reason=f"frequency_cap: {cap.messages} per {cap.days}d reached on {m.channel}"
            )
        if sent + ahead >= cap.messages:
            return PolicyDecision(
                action="defer",
                reason="frequency_cap: waiting for a higher-priority message to the same person",
                not_before=now + DISPLACED_WAIT,
            )
    until = quiet_until(now, tz, window)
    if until is not None:
        return PolicyDecision(
            action="defer",
            reason=f"quiet_hours: deferred to the end of quiet hours {policy.quiet_hours} ({tz.key})",
            not_before=until,
        )
    return SEND


def _consent_channel(m: OutboxMessage) -> str:
    return CONSENT_CHANNEL.get(m.channel, m.channel)


def _topic_of(m: OutboxMessage) -> str:
    """The topic of the campaign ``m`` belongs to ("" for none), frozen on the row at plan time."""
    return str((m.fields or {}).get(TOPIC_FIELD) or "")


def _left_topic(topic: str, channel: str) -> str:
    return f"left the topic {topic!r} on {channel} (preference centre)"


def _address_hash_of(m: OutboxMessage) -> str | None:
    key = CONTACT_FIELD.get(m.channel)
    address = (m.fields or {}).get(key) if key else None
    return address_hash(m.channel, address) if isinstance(address, str) and address else None


@dataclass(frozen=True)
class _Suppressions:
    """The suppression rows that concern a batch (its customers and addresses), oldest first."""

    by_customer: dict[str, list[tuple[str | None, str]]]
    by_hash: dict[str, list[tuple[str | None, str]]]

    @classmethod
    def read(cls, session: Session, customer_ids: set[str], hashes: set[str]) -> _Suppressions:
        """One query for every channel and kind (the rules pick per message)."""
        q = (
            select(Suppression.customer_id, Suppression.subject_hash, Suppression.channel, Suppression.kind)
            .where(
                or_(
                    Suppression.customer_id.in_(sorted(customer_ids)),
                    Suppression.subject_hash.in_(sorted(hashes)),
                )
            )
            .order_by(Suppression.id)
        )
        by_customer: dict[str, list[tuple[str | None, str]]] = {}
        by_hash: dict[str, list[tuple[str | None, str]]] = {}
        for cid, subject_hash, channel, kind in session.execute(q):
            if cid is not None:
                by_customer.setdefault(cid, []).append((channel, kind))
            if subject_hash is not None:
                by_hash.setdefault(subject_hash, []).append((channel, kind))
        return cls(by_customer, by_hash)

    def kind(self, m: OutboxMessage, address: str | None) -> str | None:
        """The kind of the first suppression that stops ``m`` (its customer's, else its address's)."""
        by_address = self.by_hash.get(address, []) if address else []
        for rows in (self.by_customer.get(m.customer_id, []), by_address):
            for channel, kind in rows:
                if channel in (None, m.channel) and not (m.transactional and kind == MARKETING_UNSUBSCRIBE):
                    return kind
        return None


@dataclass(frozen=True)
class _CapUsage:
    """The outbox rows that can count against a batch's caps, by (customer, channel)."""

    rows: dict[tuple[str, str], list[tuple[int, str, datetime | None, int]]]
    starts: dict[int, datetime]

    @classmethod
    def read(
        cls, session: Session, messages: Sequence[OutboxMessage], now: datetime, starts: dict[int, datetime]
    ) -> _CapUsage:
        """One query: marketing rows of the batch's people on its channels that are sent since the
        earliest window start, in flight, or waiting and due (``starts``: ``id(message)`` -> the
        start of its window)."""
        q = _marketing(
            select(
                OutboxMessage.id,
                OutboxMessage.customer_id,
                OutboxMessage.channel,
                OutboxMessage.state,
                OutboxMessage.sent_at,
                OutboxMessage.priority,
            ).where(
                OutboxMessage.customer_id.in_(sorted({m.customer_id for m in messages})),
                OutboxMessage.channel.in_(sorted({m.channel for m in messages})),
                or_(
                    and_(OutboxMessage.state == "sent", OutboxMessage.sent_at >= min(starts.values())),
                    OutboxMessage.state == "sending",
                    and_(OutboxMessage.state.in_(WAITING_STATES), OutboxMessage.not_before <= now),
                ),
            )
        )
        rows: dict[tuple[str, str], list[tuple[int, str, datetime | None, int]]] = {}
        for row_id, cid, channel, state, sent_at, priority in session.execute(q):
            rows.setdefault((cid, channel), []).append((row_id, state, sent_at, priority))
        return cls(rows, starts)

    def of(self, m: OutboxMessage) -> tuple[int, int]:
        """(messages counted against ``m``'s cap, messages due that outrank it and wait).

        Counted: sent in ``m``'s local window, or in flight and outranking it.  A row outranks
        ``m`` with a higher priority, or the same priority and an older row (any row, when ``m``
        has no id yet)."""
        start = self.starts[id(m)]
        sent = ahead = 0
        for row_id, state, sent_at, priority in self.rows.get((m.customer_id, m.channel), ()):
            if m.id is not None and row_id == m.id:
                continue
            outranks = priority > m.priority or (priority == m.priority and (m.id is None or row_id < m.id))
            if state == "sent":
                sent += _aware(sent_at) >= start
            elif state == "sending":
                sent += outranks
            else:
                ahead += outranks
        return sent, ahead


_ZONES_SQL = "SELECT customer_id, timezone FROM customers WHERE customer_id IN (SELECT unnest(?::VARCHAR[]))"


def _zones_of(ctx: StoreContext, messages: Sequence[OutboxMessage], default: str) -> dict[int, ZoneInfo]:
    """``id(message)`` -> its recipient's time zone: frozen in the message's fields, else the
    customers table's, else ``default``."""
    frozen = {id(m): (m.fields or {}).get(TZ_FIELD) for m in messages}
    missing = sorted({m.customer_id for m in messages if not frozen[id(m)]})
    table: dict[str, str] = {}
    if missing and ctx.warehouse.has_table("customers"):
        if ctx.warehouse.backend_name == "duckdb":  # ensure_schema gives it a timezone column
            rows = ctx.warehouse.fetch(_ZONES_SQL, [missing])
            table = {r["customer_id"]: r["timezone"] for r in rows if r["timezone"]}
        else:
            t = ctx.table("customers")
            if "timezone" in t.columns:
                frame = t.filter(t.customer_id.isin(missing)).select("customer_id", "timezone").to_pandas()
                table = {c: z for c, z in zip(frame["customer_id"], frame["timezone"], strict=True) if z}
    return {id(m): zone(frozen[id(m)] or table.get(m.customer_id), default) for m in messages}
