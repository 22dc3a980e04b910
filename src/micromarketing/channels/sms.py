"""SMS: GSM-7 / UCS-2 detection, segment counting (the billing unit), E.164 numbers, and an SMS
channel that hands messages to a provider through a signed webhook.

Single-segment limits are 160 GSM-7 septets or 70 UCS-2 code units; concatenated messages carry a
header and hold 153 septets or 67 units per segment.  An extension-table character (``^{}\\[~]|€``
and form feed) takes two septets and is never split across segments; a character outside the
Basic Multilingual Plane takes two UCS-2 units (a surrogate pair), never split either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from micromarketing.channels.base import ChannelKind, DeliveryOutcome, Done, OutgoingMessage, send_each
from micromarketing.channels.webhook import WebhookChannel

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_PUNCT = re.compile(r"[\s().\-/]")


class SmsSegments(BaseModel):
    """How a text is encoded and how many segments (billed messages) it takes."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 basic or extension table."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _pack(widths: list[int], single: int, multi: int) -> int:
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for w in widths:
        if used + w > multi:
            segments += 1
            used = 0
        used += w
    return segments


def count_segments(text: str) -> SmsSegments:
    """The encoding and segment count of ``text`` (0 segments for the empty text)."""
    if is_gsm7(text):
        widths = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return SmsSegments(encoding="GSM-7", units=sum(widths), segments=_pack(widths, 160, 153))
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsSegments(encoding="UCS-2", units=sum(widths), segments=_pack(widths, 70, 67))


def sms_cost(text: str, price_per_segment: float) -> float:
    """The price of sending ``text`` once."""
    return count_segments(text).segments * price_per_segment


def to_e164(number: str, default_country_code: str | None = None) -> str | None:
    """``number`` as E.164 (``+`` country code subscriber number, ≤ 15 digits), or None.

    Spaces, dots, dashes, slashes and parentheses are dropped; ``00`` is read as ``+``; a number
    without either uses ``default_country_code`` after dropping a national trunk ``0``."""
    raw = _PUNCT.sub("", number.strip())
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        if not default_country_code or not raw.isdigit():
            return None
        raw = "+" + default_country_code + raw.lstrip("0")
    return raw if _E164.match(raw) else None


class SmsChannel:
    """Sends each message's ``sms`` body to ``to`` (E.164) through a provider webhook; the outcome
    carries the segment count in ``units``.  Invalid numbers and empty bodies fail permanently
    without a suppression."""

    kind: ChannelKind = "sms"

    def __init__(self, webhook: WebhookChannel, *, sender_id: str | None = None) -> None:
        self._webhook = webhook
        self.sender_id = sender_id

    def close(self) -> None:
        """Close the underlying webhook client."""
        self._webhook.close()

    def __enter__(self) -> SmsChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_batch(
        self, messages: Iterable[OutgoingMessage], done: Done | None = None
    ) -> list[DeliveryOutcome]:
        """Validate and POST each message; one outcome per message, in order (each to ``done``)."""
        return send_each(messages, self._send_one, done)

    def _send_one(self, msg: OutgoingMessage) -> DeliveryOutcome:
        body = msg.sms or ""
        number = to_e164(msg.to)
        if number is None or number != msg.to:
            return DeliveryOutcome.permanent(msg.message_id, f"not an E.164 number: {msg.to!r}")
        if not body:
            return DeliveryOutcome.permanent(msg.message_id, "empty SMS body")
        seg = count_segments(body)
        payload = {
            "type": "message.sms",
            "data": {
                "message_id": msg.message_id,
                "customer_id": msg.customer_id,
                "to": number,
                "from": self.sender_id,
                "body": body,
                "encoding": seg.encoding,
                "segments": seg.segments,
                "campaign_id": msg.campaign_id,
                "variant": msg.variant,
            },
        }
        return self._webhook.post(msg, payload, units=seg.segments)
