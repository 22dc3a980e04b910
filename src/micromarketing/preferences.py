"""What a customer can do from the links in their messages: unsubscribe and the preference centre.

The customer is known only through the opaque HMAC token of :mod:`micromarketing.tokens`
(``/u/{token}``, ``/preferences/{token}``); an altered or forged token is "not found", nothing
more.  Every change of consent is appended to the consent ledger (the warehouse ``consent``
table: latest record per customer, channel and purpose wins) with source ``preference centre``;
an unsubscribe also writes a ``suppressions`` row, which delivery checks before every send.  A
pause is a suppression with a last day (see :data:`~micromarketing.campaigns.policy.PAUSE_KIND`),
not a change of consent: the contact policy lets messages through again after it.

Topics (``[preferences.topics]``: newsletter, offers, …) are *purposes* of the ledger, not a
column of their own: the ledger's ``purpose`` already says what a consent is for, and its key and
its fold (latest record per customer, channel and purpose) already keep one choice per topic and
channel, so every reader of the ledger, the erasure and the retention rules treat topic choices
as the consent records they are.  ``marketing`` stays the channel's own consent (the permission
to send on it at all); a topic narrows it: a campaign with ``topic`` reaches a person only with
marketing consent on the channel and no ``opt_out`` in force for the topic there.  The centre
records a topic choice on every channel at once (one checkbox per topic).

Ledger records are written by :func:`micromarketing.privacy.consent.record_consent`, the one
writer of the ledger.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from micromarketing.campaigns.policy import PAUSE_KIND, pause_end, pause_reason
from micromarketing.errors import InvalidInputError, NotFoundError
from micromarketing.personalize.templates import token_secret
from micromarketing.privacy.consent import DEFAULT_PURPOSE, consent_history, record_consent
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

    @classmethod
    def of(cls, record: LedgerRecord) -> ConsentRecord:
        return cls(channel=record.channel, status=record.status, recorded_at=record.recorded_at,
                   source=record.source, purpose=record.purpose)


class Preferences(BaseModel):
    """A customer's current choices as the preference centre shows them (no contact details)."""

    channels: dict[str, ConsentStatus | None] = Field(
        description="latest marketing consent per channel (None: never recorded)"
    )
    topics: dict[str, bool] = Field(
        default_factory=dict,
        description="each configured topic: False once left (an opt_out in force on any channel)",
    )
    paused_until: date | None = None
    unsubscribed: bool = False
    erasure_requested: bool = False


class PreferenceChange(BaseModel):
    """What one preference-centre action appended to the ledger and the suppression list."""

    recorded: list[ConsentRecord]
    suppressed: bool = False
    preferences: Preferences


def append_consent(
    ctx: StoreContext, customer_id: str, statuses: dict[str, str], source: str = SOURCE
) -> list[ConsentRecord]:
    """Append one ledger record per channel in ``statuses`` (``opt_in``/``opt_out``), all stamped
    now, through the privacy package's one ledger writer (validated, audited)."""
    now = datetime.now(UTC)
    recorded = [
        record_consent(ctx, customer_id, channel, status, source=source, at=now, actor=source)
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
        latest: dict[tuple[str, str], str] = {}
        for record in consent_history(self.ctx, customer_id):  # oldest first: latest wins
            latest[(record.purpose, record.channel)] = record.status
        with self.ctx.ops.session() as session:
            rows = list(
                session.scalars(
                    select(Suppression).where(
                        Suppression.customer_id == customer_id, Suppression.source == SOURCE
                    )
                )
            )
        paused = [pause_end(r.reason) for r in rows if r.kind == PAUSE_KIND]
        current_pause = max((p for p in paused if p is not None), default=None)
        if current_pause is not None and current_pause < datetime.now(UTC).date():
            current_pause = None
        return Preferences(
            channels={c: latest.get((DEFAULT_PURPOSE, c)) for c in CONSENT_CHANNELS},  # type: ignore[misc]
            topics={t: not _left(latest, t) for t in self.topics},
            paused_until=current_pause,
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
        """Record the customer's choice per channel (``opt_in`` resubscribes)."""
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
        """Stop all messages for ``days`` days: a suppression (kind ``paused``) that names its last
        day, after which the contact policy lets messages through again.

        Consent is left as it is (a pause is not a withdrawal: an opt_out in the ledger would
        outlive the pause); the pause and its end go to the audit log."""
        if not 1 <= days <= MAX_PAUSE_DAYS:
            raise InvalidInputError(f"pause: days must be between 1 and {MAX_PAUSE_DAYS}")
        customer_id = self.customer_for(token)
        until = datetime.now(UTC).date() + timedelta(days=days)
        self._suppress(customer_id, None, PAUSE_KIND, pause_reason(until))
        self.ctx.audit("preferences.pause", customer_id, {"until": until.isoformat()}, actor=SOURCE)
        return self._change(customer_id, [], suppressed=True)

    def resubscribe(self, token: str) -> PreferenceChange:
        """Undo an unsubscribe or pause: lift this centre's suppressions and opt in to email."""
        customer_id = self.customer_for(token)
        self._lift(customer_id, None)
        recorded = append_consent(self.ctx, customer_id, {UNSUBSCRIBE_CHANNEL: "opt_in"})
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
        """Delete this centre's unsubscribe/pause rows (all, or those of ``channels`` and any-channel)."""
        with self.ctx.ops.session() as session:
            mine = select(Suppression).where(
                Suppression.customer_id == customer_id, Suppression.source == SOURCE
            )
            for row in session.scalars(mine):
                if row.reason == "erasure requested":
                    continue
                if channels is None or row.channel in channels or row.kind == PAUSE_KIND:
                    session.delete(row)



def _left(latest: dict[tuple[str, str], str], topic: str) -> bool:
    """Whether an ``opt_out`` is in force for ``topic`` on any channel."""
    return any(latest.get((topic, c)) == "opt_out" for c in CONSENT_CHANNELS)
