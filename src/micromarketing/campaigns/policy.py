"""The one contact policy: consent, suppressions, frequency caps and quiet hours.

The same rules run in two places:

* at plan and run time, vectorised over a segment's members (:func:`evaluate_members`), to count
  what each rule removes and to write skipped/deferred outbox rows with their reason;
* at send time, per message, by the delivery worker (:func:`decide`, or :func:`decide_many` for
  a batch with one query per rule), because consent, suppressions and other campaigns' sends
  change between the run and the send.

Rules, in order (the first that applies decides):

1. ``no_consent`` — the latest ``consent`` record (warehouse ledger: latest ``recorded_at`` per
   customer and channel wins) for the message's consent channel is not ``opt_in``, or there is none.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from micromarketing.config import PolicySettings
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
    ctx: StoreContext, channel: str, customer_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """``customer_id, status`` of the latest consent record per customer on consent ``channel``."""
    if not ctx.warehouse.has_table("consent"):
        return pd.DataFrame({"customer_id": pd.Series(dtype=str), "status": pd.Series(dtype=str)})
    t = ctx.table("consent")
    t = t.filter(t.channel == channel)
    if customer_ids is not None:
        t = t.filter(t.customer_id.isin(list(customer_ids)))
    ranked = t.mutate(
        _rank=ibis.row_number().over(
            ibis.window(group_by=t.customer_id, order_by=[t.recorded_at.desc(), t.status.desc()])
        )
    )
    return ranked.filter(ranked._rank == 0).select("customer_id", "status").to_pandas()


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
    q = select(Suppression.customer_id, Suppression.subject_hash, Suppression.kind).where(
        or_(Suppression.channel.is_(None), Suppression.channel == channel)
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
    policy: PolicySettings | None = None,
) -> pd.DataFrame:
    """The policy's verdict for each member (``customer_id``, optional ``timezone``) at ``when``.

    Returns ``customer_id``, ``outcome`` (``send`` or a rule of :data:`RULES`), ``reason`` and
    ``not_before`` (UTC; ``when`` unless quiet hours defer it).  Messages of other campaigns
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
    not_before = pd.Series(pd.Timestamp(when.astimezone(UTC)), index=range(n))

    def apply(mask: np.ndarray, rule: str, why: np.ndarray | str) -> None:
        todo = mask & (outcome == "send")
        outcome[todo] = rule
        reason[todo] = (
            f"{rule}: " + why if isinstance(why, str) else np.char.add(f"{rule}: ", why[todo].astype(str))
        )

    consent_channel = CONSENT_CHANNEL[channel]
    if not transactional:
        consent = latest_consent(ctx, consent_channel)
        status = dict(zip(consent["customer_id"], consent["status"], strict=True))
        got = np.array([status.get(c) for c in ids], dtype=object)
        apply(got == None, "no_consent", f"no {consent_channel} consent on record")  # noqa: E711
        apply(got == "opt_out", "no_consent", f"latest {consent_channel} consent is opt_out")
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
            not_before[deferred] = [pd.Timestamp(e) for e in ends[deferred]]
    return pd.DataFrame(
        {"customer_id": ids, "outcome": outcome, "reason": reason, "not_before": not_before.to_numpy()}
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
    through it).  See :func:`decide_many` to decide a batch with one query per rule."""
    return decide_many(ctx, session, [message], now)[0]


def decide_many(
    ctx: StoreContext, session: Session, messages: Sequence[OutboxMessage], now: datetime
) -> list[PolicyDecision]:
    """:func:`decide` for each of ``messages`` (one decision per message, in order)."""
    policy = ctx.settings.policy
    now = _aware(now)
    decisions: list[PolicyDecision | None] = [None] * len(messages)
    todo: list[int] = []
    for i, m in enumerate(messages):
        if m.is_test:
            decisions[i] = PolicyDecision(action="send", reason="test message: outside the contact policy")
            continue
        window_end = (m.fields or {}).get(WINDOW_END_FIELD)
        if window_end and now > _aware(datetime.fromisoformat(window_end)):
            decisions[i] = PolicyDecision(action="skip", reason=f"send_window: closed at {window_end}")
            continue
        todo.append(i)
    by_channel: dict[tuple[str, bool], list[int]] = {}
    for i in todo:
        by_channel.setdefault((messages[i].channel, bool(messages[i].transactional)), []).append(i)
    zones = _zones_of(ctx, [messages[i] for i in todo], policy.timezone)
    cap = parse_frequency_cap(policy.frequency_cap)
    window = parse_quiet_hours(policy.quiet_hours)
    for (channel, transactional), idx in by_channel.items():
        ids = sorted({messages[i].customer_id for i in idx})
        consent: dict[str, str] = {}
        if not transactional:
            frame = latest_consent(ctx, CONSENT_CHANNEL.get(channel, channel), ids)
            consent = dict(zip(frame["customer_id"], frame["status"], strict=True))
        hashes = {i: _address_hash_of(messages[i]) for i in idx}
        by_customer, by_hash = suppressions_for(
            session, channel, transactional, ids, [h for h in hashes.values() if h]
        )
        for i in idx:
            m = messages[i]
            tz = zone(zones.get(m.customer_id), policy.timezone)
            h = hashes[i]
            kind = by_customer.get(m.customer_id) or (by_hash.get(h) if h else None)
            decisions[i] = _decide_one(
                session,
                m,
                now,
                tz,
                consent,
                kind,
                None if transactional else cap,
                None if transactional else window,
                policy,
            )
    return [d if d is not None else SEND for d in decisions]


def _decide_one(
    session: Session,
    m: OutboxMessage,
    now: datetime,
    tz: ZoneInfo,
    consent: dict[str, str],
    suppressed: str | None,
    cap: FrequencyCap | None,
    window: QuietHours | None,
    policy: PolicySettings,
) -> PolicyDecision:
    consent_channel = CONSENT_CHANNEL.get(m.channel, m.channel)
    if not m.transactional:
        status = consent.get(m.customer_id)
        if status is None:
            return PolicyDecision(action="skip", reason=f"no_consent: no {consent_channel} consent on record")
        if status != "opt_in":
            return PolicyDecision(
                action="skip", reason=f"no_consent: latest {consent_channel} consent is {status}"
            )
    if suppressed:
        return PolicyDecision(action="skip", reason=f"suppressed: suppression list ({suppressed})")
    if cap is not None:
        sent, ahead = _usage_at_send(session, m, now, cap_window_start(now, tz, cap.days))
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
    return (
        SEND
        if not m.transactional
        else PolicyDecision(
            action="send", reason="transactional: exempt from consent, caps, quiet hours and unsubscribes"
        )
    )


def _address_hash_of(m: OutboxMessage) -> str | None:
    key = CONTACT_FIELD.get(m.channel)
    address = (m.fields or {}).get(key) if key else None
    return address_hash(m.channel, address) if isinstance(address, str) and address else None


def _outranks(m: OutboxMessage):  # type: ignore[no-untyped-def]
    """SQL condition: an outbox row that wins a cap collision against ``m``."""
    older = OutboxMessage.id < m.id if m.id is not None else OutboxMessage.id.is_not(None)
    return or_(OutboxMessage.priority > m.priority, and_(OutboxMessage.priority == m.priority, older))


def _usage_at_send(session: Session, m: OutboxMessage, now: datetime, start: datetime) -> tuple[int, int]:
    """(messages counted against ``m``'s cap, messages due that outrank it and wait)."""
    base = _marketing(
        select(OutboxMessage.state, OutboxMessage.sent_at).where(
            OutboxMessage.customer_id == m.customer_id, OutboxMessage.channel == m.channel
        )
    )
    if m.id is not None:
        base = base.where(OutboxMessage.id != m.id)
    rows = session.execute(
        base.where(
            or_(
                and_(OutboxMessage.state == "sent", OutboxMessage.sent_at >= start),
                and_(OutboxMessage.state == "sending", _outranks(m)),
                and_(
                    OutboxMessage.state.in_(WAITING_STATES),
                    OutboxMessage.not_before <= now,
                    _outranks(m),
                ),
            )
        )
    ).all()
    sent = sum(
        1 for state, sent_at in rows if state == "sending" or (state == "sent" and _aware(sent_at) >= start)
    )
    ahead = sum(1 for state, _ in rows if state in WAITING_STATES)
    return sent, ahead


def _zones_of(ctx: StoreContext, messages: Iterable[OutboxMessage], default: str) -> dict[str, str]:
    """Customer id -> time zone name: frozen in the message's fields, else the customers table."""
    out: dict[str, str] = {}
    missing: set[str] = set()
    for m in messages:
        tz = (m.fields or {}).get(TZ_FIELD)
        if tz:
            out[m.customer_id] = tz
        else:
            missing.add(m.customer_id)
    if missing and ctx.warehouse.has_table("customers"):
        t = ctx.table("customers")
        if "timezone" in t.columns:
            frame = (
                t.filter(t.customer_id.isin(sorted(missing))).select("customer_id", "timezone").to_pandas()
            )
            out.update({c: z for c, z in zip(frame["customer_id"], frame["timezone"], strict=True) if z})
    return out
