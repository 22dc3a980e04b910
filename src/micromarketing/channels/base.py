"""The Channel protocol every delivery channel implements, the message and outcome models, and
the retry policy the outbox applies to temporary failures.

A channel never raises for one recipient's failure: ``send_batch`` returns one
:class:`DeliveryOutcome` per message, in order, and hands each outcome to its ``done`` callback
as soon as it is known, before the next message is released to the server (the outbox commits
there, so a crash repeats at most the message in flight).  A connection-level failure (server gone, timeout)
marks the message in flight and every later one of the batch ``temporary_failure``, so the caller
always has a record for each message.  A message that was in flight when the connection broke
may have been delivered; it is retried with the same ``message_id`` (the email ``Message-ID``,
the webhook ``webhook-id``), which lets receivers drop the duplicate.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from micromarketing.config import RetryPolicy

ChannelKind = Literal["email", "webhook", "sms", "direct_mail", "audience"]
OutcomeStatus = Literal["sent", "temporary_failure", "permanent_failure"]


def message_key(campaign_id: str, customer_id: str, channel: str) -> str:
    """The stable id of one campaign's message to one customer on one channel (32 hex chars).

    The same inputs give the same key on every run and every retry; the email channel turns it
    into the ``Message-ID`` header and the webhook channel sends it as ``webhook-id``."""
    raw = f"{campaign_id}\x1f{customer_id}\x1f{channel}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class OutgoingMessage(BaseModel):
    """One rendered message to one recipient, ready for a channel (immutable).

    ``to`` is an email address, an E.164 number or a webhook subscriber id depending on the
    channel.  ``unsubscribe_url`` is ``{public_url}/u/{token}``; the email channel requires it
    unless ``transactional``.  ``metadata`` carries channel-specific fields (a postal address for
    direct mail) and is echoed in webhook payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(min_length=1)
    customer_id: str
    channel: ChannelKind
    to: str
    subject: str = ""
    text: str = ""
    html: str | None = None
    sms: str | None = None
    unsubscribe_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    campaign_id: str | None = None
    variant: str | None = None
    offer_code: str | None = None
    transactional: bool = False


class DeliveryOutcome(BaseModel):
    """What happened to one message in one attempt.

    * ``sent``: accepted by the server/provider.
    * ``temporary_failure``: retry later (SMTP 4xx, HTTP 5xx/429, connection lost).
    * ``permanent_failure``: do not retry.  ``suppress`` is True when the recipient itself was
      rejected (SMTP 5xx at send time: a hard bounce), so the caller adds it to the suppression
      list; False when the message was unusable (invalid number, missing unsubscribe link).

    ``code`` is the SMTP reply code or HTTP status when there was one; ``units`` counts billable
    units (SMS segments)."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    status: OutcomeStatus
    code: int | None = None
    reason: str = ""
    suppress: bool = False
    units: int | None = None

    @property
    def retryable(self) -> bool:
        """True for a temporary failure."""
        return self.status == "temporary_failure"

    @classmethod
    def sent(cls, message_id: str, code: int | None = None, reason: str = "", units: int | None = None):
        """A delivered message."""
        return cls(message_id=message_id, status="sent", code=code, reason=reason, units=units)

    @classmethod
    def temporary(cls, message_id: str, reason: str, code: int | None = None):
        """A failure worth retrying."""
        return cls(message_id=message_id, status="temporary_failure", code=code, reason=reason)

    @classmethod
    def permanent(cls, message_id: str, reason: str, code: int | None = None, suppress: bool = False):
        """A failure not worth retrying (``suppress``: the recipient is undeliverable)."""
        return cls(
            message_id=message_id, status="permanent_failure", code=code, reason=reason, suppress=suppress
        )


#: Called with each message and its outcome the moment the outcome is known.
Done = Callable[[OutgoingMessage, DeliveryOutcome], None]


def send_each(
    messages: Iterable[OutgoingMessage],
    send_one: Callable[[OutgoingMessage], DeliveryOutcome],
    done: Done | None,
) -> list[DeliveryOutcome]:
    """``send_one`` each message in turn, handing each outcome to ``done`` before the next send."""
    outcomes = []
    for message in messages:
        outcome = send_one(message)
        outcomes.append(outcome)
        if done is not None:
            done(message, outcome)
    return outcomes


@runtime_checkable
class Channel(Protocol):
    """A delivery channel: email over SMTP, webhook, SMS (through a webhook provider), direct mail.

    ``send_batch`` returns exactly one outcome per message, in the order given, and raises only
    for programming errors, never for a recipient's or the server's failure.  It calls
    ``done(message, outcome)`` for each message as soon as the outcome is known and before the
    next message is released to the server; ``messages`` may be a lazy iterable (pulled at most
    one message ahead).  ``close`` releases
    connections (and, for file channels, writes the files); a channel may be reused for many
    batches before it."""

    kind: ChannelKind

    def send_batch(
        self, messages: Iterable[OutgoingMessage], done: Done | None = None
    ) -> list[DeliveryOutcome]: ...

    def close(self) -> None: ...


def send_with_retries(
    channel: Channel,
    messages: Sequence[OutgoingMessage],
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Callable[[float], None],
) -> tuple[list[DeliveryOutcome], list[int]]:
    """Send ``messages`` and retry the temporary failures in-process until sent, permanently
    failed or out of attempts (then the last temporary outcome stands).

    For tests, scripts and small sends without an outbox; the durable outbox schedules retries
    with :meth:`RetryPolicy.next_attempt_at` instead of sleeping.  Returns the final outcome per
    message (in order) and the number of attempts each took."""
    outcomes: list[DeliveryOutcome | None] = [None] * len(messages)
    attempts = [0] * len(messages)
    pending = list(range(len(messages)))
    while pending:
        results = channel.send_batch([messages[i] for i in pending])
        retry = []
        for i, outcome in zip(pending, results, strict=True):
            attempts[i] += 1
            outcomes[i] = outcome
            if outcome.retryable and not policy.exhausted(attempts[i]):
                retry.append(i)
        if retry:
            sleep(policy.delay_seconds(max(attempts[i] for i in retry), rng))
        pending = retry
    return [o for o in outcomes if o is not None], attempts
