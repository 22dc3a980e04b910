"""What a customer can do from the links in their messages: unsubscribe and the preference centre.

The customer is known only through the opaque HMAC token of :mod:`micromarketing.tokens`
(``/u/{token}``, ``/preferences/{token}``); an altered or forged token is "not found", nothing
more.  Every change of consent is appended to the consent ledger (the warehouse ``consent``
table: per customer, channel and purpose the latest record still valid is in force) with source
``preference centre``; an unsubscribe also writes a ``suppressions`` row, which delivery checks
before every send.

A pause is a ledger record with an end: an ``opt_out`` with ``valid_until`` = the start of the
day after the pause's last day (UTC), on each channel opted in.  The contact policy refuses the
person through consent until then, and from then on the record beneath (their ``opt_in``) is in
force again with no further write.  :attr:`Preferences.paused_until` is read back from the
ledger; :attr:`Preferences.channels` shows the choices that hold once the pause is over, so
saving the page (which records every channel's choice, permanently) ends a pause, as
:meth:`PreferenceCentre.resubscribe` does.

Topics (``[preferences.topics]``: newsletter, offers, …) are *purposes* of the ledger, not a
column of their own: the ledger's ``purpose`` already says what a consent is for, and its key and
its rule (per customer, channel and purpose, the latest record still valid) already keep one
choice per topic and channel, so every reader of the ledger, the erasure and the retention rules
treat topic choices as the consent records they are. ``marketing`` stays the channel's own
consent (the permission to send on it at all); a topic narrows it: a campaign with ``topic``
reaches a person only with marketing consent on the channel and no ``opt_out`` in force for the
topic there. The centre records a topic choice on every channel at once (one checkbox per topic).

Ledger records are written by :func:`micromarketing.privacy.consent.record_consent`, the one
writer of the ledger.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from micromarketing.errors import InvalidInputError, NotFoundError
from micromarketing.personalize.templates import token_secret
from micromarketing.privacy.consent import (
    DEFAULT_PURPOSE,
    consent_history,
    consent_state,
    moment,
    record_consent,
)
from micromarketing.privacy.consent import ConsentRecord as LedgerRecord
from micromarketing.profiles.summary import customer_view
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Suppression
from micromarketing.store.schema import CONSENT_CHANNELS
from micromarketing.tokens import verify_token

SOURCE = "preference centre"
UNSUBSCRIBE_CHANNEL = "email"  # the one-click link sits in emails (RFC 8058)
MAX_PAUSE_DAYS = 366
ConsentStatus = Literal["opt_in", "opt_out"]


class ConsentRecord(BaseModel):
    """One entry of the consent ledger, as the customer sees it."""

    channel: str
    status: str
    recorded_at: datetime
    source: str | None = None
    purpose: str = Field(default=DEFAULT_PURPOSE, description="marketing, or the topic chosen")
    valid_until: datetime | None = Field(
        default=None, description="when the record stops counting (a pause's end)"
    )

    @classmethod
    def of(cls, record: LedgerRecord) -> ConsentRecord:
        return cls(channel=record.channel, status=record.status, recorded_at=record.recorded_at,
                   source=record.source, purpose=record.purpose, valid_until=record.valid_until)


class Preferences(BaseModel):
    """A customer's current choices as the preference centre shows them (no contact details)."""

    channels: dict[str, ConsentStatus | None] = Field(
        description="marketing consent per channel once any pause is over (None: never recorded)"
    )
    topics: dict[str, bool] = Field(
        default_factory=dict,
        description="each configured topic: False once left (an opt_out in force on any channel)",
    )
    paused_until: date | None = Field(default=None, description="the last day (UTC) of a pause in force")
    unsubscribed: bool = False
    erasure_requested: bool = False


class PreferenceChange(BaseModel):
    """What one preference-centre action appended to the ledger and the suppression list."""

    recorded: list[ConsentRecord]
    suppressed: bool = False
    preferences: Preferences


def append_consent(
    ctx: StoreContext,
    customer_id: str,
    statuses: dict[str, str],
    source: str = SOURCE,
    valid_until: datetime | None = None,
) -> list[ConsentRecord]:
    """Append one ledger record per channel in ``statuses`` (``opt_in``/``opt_out``), all stamped
    now (and ending at ``valid_until``, if given), through the privacy package's one ledger
    writer (validated, audited)."""
    now = datetime.now(UTC)
    recorded = [
        record_consent(ctx, customer_id, channel, status, source=source, at=now, valid_until=valid_until,
                       actor=source)
        for channel, status in statuses.items()
    ]
    return [ConsentRecord.of(r) for r in recorded]


def recent_consent(ctx: StoreContext, customer_id: str, limit: int | None = None) -> list[ConsentRecord]:
    """The ledger of ``customer_id``, newest first, as the preference centre shows it (read by
    the privacy package's one reader)."""
    return [ConsentRecord.of(r) for r in reversed(consent_history(ctx, customer_id))][:limit]


class PreferenceCentre:
    """The ``ws.preferences`` sub-facade: the public customer routes' operations, keyed by token."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    # -- identity ---------------------------------------------------------------------------
    def customer_for(self, token: str) -> str:
        """The customer ``token`` was issued for; :class:`NotFoundError` for anything else.

        The message never says why (altered, another workspace's, unknown customer)."""
        customer_id = verify_token(token_secret(self.ctx), token)
        if customer_id is None or not self._known(customer_id):
            raise NotFoundError("not found")
        return customer_id

    def _known(self, customer_id: str) -> bool:
        customers = self.ctx.table("customers")
        return bool(customers.filter(customers.customer_id == customer_id).count().execute())

    # -- reading ----------------------------------------------------------------------------
    def preferences(self, token: str) -> Preferences:
        """The current choices of the token's customer."""
        return self._preferences(self.customer_for(token))

    @property
    def topics(self) -> dict[str, str]:
        """The configured topics: name -> the label customers see, in the order shown."""
        return self.ctx.settings.preferences.topics

    def _preferences(self, customer_id: str) -> Preferences:
        now = moment(None)
        in_force = consent_state(self.ctx, customer_id, at=now)
        pause_end = _pause_end(in_force)
        # the channel choices that hold once the pause is over (the pause's records end then)
        standing = consent_state(self.ctx, customer_id, at=pause_end) if pause_end else in_force
        marketing = {r.channel: r.status for r in standing if r.purpose == DEFAULT_PURPOSE}
        topics = {(r.purpose, r.channel): r.status for r in in_force if r.purpose != DEFAULT_PURPOSE}
        with self.ctx.ops.session() as session:
            rows = list(
                session.scalars(
                    select(Suppression).where(
                        Suppression.customer_id == customer_id, Suppression.source == SOURCE
                    )
                )
            )
        return Preferences(
            channels={c: marketing.get(c) for c in CONSENT_CHANNELS},  # type: ignore[misc]
            topics={t: not _left(topics, t) for t in self.topics},
            paused_until=_last_day(pause_end) if pause_end else None,
            unsubscribed=any(r.kind == "unsubscribe" for r in rows),
            erasure_requested=any(r.kind == "manual" and r.reason == "erasure requested" for r in rows),
        )

    def export(self, token: str) -> dict[str, Any]:
        """Everything held about the token's customer that the self-service download gives back."""
        customer_id = self.customer_for(token)
        view = customer_view(self.ctx, customer_id, orders=1000)
        return {
            "customer_id": customer_id,
            "attributes": view.attributes,
            "profile": view.profile,
            "orders": view.recent_orders,
            "consent": [r.model_dump(mode="json") for r in recent_consent(self.ctx, customer_id)],
            "preferences": self._preferences(customer_id).model_dump(mode="json"),
        }

    # -- changes ----------------------------------------------------------------------------
    def unsubscribe(self, token: str) -> PreferenceChange:
        """One-click unsubscribe (RFC 8058): a suppression row and an ``opt_out`` ledger record."""
        customer_id = self.customer_for(token)
        self._suppress(customer_id, UNSUBSCRIBE_CHANNEL, "unsubscribe", "one-click unsubscribe")
        recorded = append_consent(self.ctx, customer_id, {UNSUBSCRIBE_CHANNEL: "opt_out"})
        return self._change(customer_id, recorded, suppressed=True)

    def set_channels(self, token: str, statuses: dict[str, str]) -> PreferenceChange:
        """Record the customer's choice per channel (``opt_in`` resubscribes); the records have
        no end, so they end a pause in force on those channels."""
        customer_id = self.customer_for(token)
        recorded = append_consent(self.ctx, customer_id, statuses)
        if any(s == "opt_in" for s in statuses.values()):
            self._lift(customer_id, [c for c, s in statuses.items() if s == "opt_in"])
        return self._change(customer_id, recorded)

    def set_choices(self, token: str, channels: dict[str, str], topics: set[str]) -> PreferenceChange:
        """Record the customer's choice per channel (as :meth:`set_channels`) and that they want
        exactly the ``topics`` named (the others are left).

        A topic's records (one per channel) are appended only where the choice changes, so
        saving the page unchanged does not multiply them.  Raises :class:`InvalidInputError` for
        a topic that is not configured."""
        customer_id = self.customer_for(token)  # first: a forged token learns nothing else
        unknown = sorted(topics - set(self.topics))
        if unknown:
            raise InvalidInputError(f"topic: {', '.join(map(repr, unknown))} is not a topic offered here")
        change = self.set_channels(token, channels)
        wanted = self._preferences(customer_id).topics
        now = datetime.now(UTC)
        recorded = [
            ConsentRecord.of(
                record_consent(self.ctx, customer_id, channel, "opt_in" if topic in topics else "opt_out",
                               purpose=topic, source=SOURCE, at=now, actor=SOURCE)
            )
            for topic, subscribed in wanted.items()
            if subscribed != (topic in topics)
            for channel in CONSENT_CHANNELS
        ]
        if not recorded:
            return change
        return self._change(customer_id, change.recorded + recorded)

    def pause(self, token: str, days: int) -> PreferenceChange:
        """Stop all messages for ``days`` days (today, UTC, and the ``days`` after it): on each
        channel opted in, an ``opt_out`` that ends at the start of the following day, after which
        the opt_in beneath it is in force again.

        A pause in force that ends later is kept (a pause is extended, never shortened; to end
        one, resubscribe).  With no channel opted in nothing is recorded: there is nothing to
        stop."""
        if not 1 <= days <= MAX_PAUSE_DAYS:
            raise InvalidInputError(f"pause: days must be between 1 and {MAX_PAUSE_DAYS}")
        customer_id = self.customer_for(token)
        current = self._preferences(customer_id)
        last_day = max(datetime.now(UTC).date() + timedelta(days=days), current.paused_until or date.min)
        opted_in = {c: "opt_out" for c, s in current.channels.items() if s == "opt_in"}
        recorded = append_consent(self.ctx, customer_id, opted_in, valid_until=_day_after(last_day))
        return self._change(customer_id, recorded)

    def resubscribe(self, token: str) -> PreferenceChange:
        """Undo a pause or an unsubscribe.

        A pause ends by appending, on each paused channel, the choice that holds after it (what
        was in force before the pause; ``opt_out`` where nothing was).  An unsubscribe (or a
        click with no pause in force) lifts this centre's suppressions and opts in to email."""
        customer_id = self.customer_for(token)
        current = self._preferences(customer_id)
        in_force = consent_state(self.ctx, customer_id)
        paused = [r.channel for r in in_force if r.purpose == DEFAULT_PURPOSE and _pauses(r)]
        statuses: dict[str, str] = {c: current.channels.get(c) or "opt_out" for c in paused}
        if current.unsubscribed or not paused:
            self._lift(customer_id, None)
            statuses[UNSUBSCRIBE_CHANNEL] = "opt_in"
        recorded = append_consent(self.ctx, customer_id, statuses)
        return self._change(customer_id, recorded)

    def request_erasure(self, token: str) -> PreferenceChange:
        """The customer asks to be forgotten: opt out everywhere, suppress, and log the request.

        The erasure itself is the privacy package's ``forget`` (an admin runs it; the audit log
        entry ``privacy.erasure_requested`` is the queue)."""
        customer_id = self.customer_for(token)
        self._suppress(customer_id, None, "manual", "erasure requested")
        recorded = append_consent(self.ctx, customer_id, dict.fromkeys(CONSENT_CHANNELS, "opt_out"))
        self.ctx.audit("privacy.erasure_requested", customer_id, {"source": SOURCE}, actor=SOURCE)
        return self._change(customer_id, recorded, suppressed=True)

    # -- helpers ----------------------------------------------------------------------------
    def _change(
        self, customer_id: str, recorded: list[ConsentRecord], *, suppressed: bool = False
    ) -> PreferenceChange:
        return PreferenceChange(
            recorded=recorded, suppressed=suppressed, preferences=self._preferences(customer_id)
        )

    def _suppress(self, customer_id: str, channel: str | None, kind: str, reason: str) -> None:
        with self.ctx.ops.session() as session:
            session.add(
                Suppression(customer_id=customer_id, channel=channel, kind=kind, reason=reason, source=SOURCE)
            )

    def _lift(self, customer_id: str, channels: list[str] | None) -> None:
        """Delete this centre's unsubscribe rows (all, or those of ``channels``)."""
        with self.ctx.ops.session() as session:
            mine = select(Suppression).where(
                Suppression.customer_id == customer_id, Suppression.source == SOURCE
            )
            for row in session.scalars(mine):
                if row.reason == "erasure requested":
                    continue
                if channels is None or row.channel in channels:
                    session.delete(row)


def _left(in_force: dict[tuple[str, str], str], topic: str) -> bool:
    """Whether an ``opt_out`` is in force for ``topic`` on any channel."""
    return any(in_force.get((topic, c)) == "opt_out" for c in CONSENT_CHANNELS)


def _pauses(record: LedgerRecord) -> bool:
    """Whether a record in force is a pause: an ``opt_out`` with an end."""
    return record.status == "opt_out" and record.valid_until is not None


def _pause_end(in_force: list[LedgerRecord]) -> datetime | None:
    """When the pause in force ends: the latest end of a marketing pause record in force."""
    return max((r.valid_until for r in in_force if r.purpose == DEFAULT_PURPOSE and _pauses(r)),
               default=None)  # type: ignore[type-var]


def _day_after(last_day: date) -> datetime:
    """A pause's end: midnight UTC starting the day after its last day."""
    return datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)


def _last_day(end: datetime) -> date:
    """The last day (UTC) a record ending at ``end`` still counts on."""
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date()
