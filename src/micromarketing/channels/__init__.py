"""Delivery channels behind one :class:`Channel` protocol: email (SMTP), webhook, SMS (through a
webhook provider), direct mail files and ad-audience files.  Channels hold no database code:
the outbox (built on this package) records every :class:`DeliveryOutcome`.

Contract for the outbox: build each :class:`OutgoingMessage` with ``message_id =
message_key(campaign_id, customer_id, channel)`` and store it (``model_dump_json``) with the row,
so a retry after a crash re-sends the identical message (same ``Message-ID`` / ``webhook-id``).
Lease a batch (state ``sending``), call ``send_batch`` once and record each outcome in its
``done`` callback (called before the next message goes out, so a crash repeats at most the
message in flight), mapping it:
``sent`` → sent; ``temporary_failure`` → deferred until ``RetryPolicy.next_attempt_at(attempts,
now, rng)``, or failed with ``reason`` when that is None; ``permanent_failure`` → failed, and
when ``suppress`` add the address to the suppression list.  ``skipped`` (consent, caps, quiet
hours, suppression) is decided before a message reaches a channel.
Modules: ``email``, ``webhook``, ``sms``, ``direct_mail``, ``audiences``, ``tokens``
(unsubscribe links), ``suppressions`` (provider exports); their settings live in ``config``."""

from micromarketing.channels.base import (
    Channel,
    ChannelKind,
    DeliveryOutcome,
    OutgoingMessage,
    RetryPolicy,
    message_key,
    send_with_retries,
)

__all__ = [
    "Channel",
    "ChannelKind",
    "DeliveryOutcome",
    "OutgoingMessage",
    "RetryPolicy",
    "message_key",
    "send_with_retries",
]
