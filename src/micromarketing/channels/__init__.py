"""Delivery channels behind one :class:`Channel` protocol: email (SMTP), webhook, SMS (through a
webhook provider), direct mail files and ad-audience files.  Channels hold no database code:
the outbox (built on this package) records every :class:`DeliveryOutcome`."""

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
