"""Webhook delivery (httpx) signed in the Standard Webhooks format — the route for SMS and in-app
providers.

Headers: ``webhook-id`` (the message key, the same on every retry so receivers can deduplicate),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature: v1,<base64
HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with the key of a ``whsec_<base64>`` secret.
Classification: 2xx → sent; 408, 425, 429 and 5xx or a transport error → temporary; other 4xx →
permanent (never a suppression: the endpoint, not the customer, refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from micromarketing.channels.base import ChannelKind, DeliveryOutcome, Done, OutgoingMessage, send_each
from micromarketing.errors import ConfigError

SECRET_PREFIX = "whsec_"
_RETRY_STATUSES = frozenset({408, 425, 429})


def generate_secret() -> str:
    """A new ``whsec_`` secret (24 random bytes, base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ConfigError("a webhook secret must be 'whsec_' followed by base64") from exc


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value ``v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>``."""
    mac = hmac.new(_secret_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def default_payload(msg: OutgoingMessage) -> dict[str, Any]:
    """``{"type", "timestamp", "data"}`` as Standard Webhooks recommends; ``data`` is the message."""
    return {
        "type": f"message.{msg.channel}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": msg.model_dump(mode="json", exclude={"headers"}),
    }


class WebhookChannel:
    """POSTs each message as signed JSON to ``url`` over one pooled httpx client."""

    kind: ChannelKind = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_seconds: float = 10.0,
        payload: Callable[[OutgoingMessage], dict[str, Any]] = default_payload,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._secret = secret
        _secret_key(secret)  # fail early on a malformed secret
        self._payload = payload
        self._client = client or httpx.Client(timeout=timeout_seconds)
        self._owns_client = client is None
        self._clock = clock

    def close(self) -> None:
        """Close the HTTP client (when this channel created it)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebhookChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, msg: OutgoingMessage, body: dict[str, Any], units: int | None = None) -> DeliveryOutcome:
        """Sign and POST ``body`` for ``msg``; the classified outcome (never raises for HTTP)."""
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        ts = int(self._clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg.message_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self._secret, msg.message_id, ts, data),
        }
        try:
            response = self._client.post(self.url, content=data, headers=headers)
        except httpx.HTTPError as exc:
            return DeliveryOutcome.temporary(msg.message_id, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        reason = f"HTTP {status} {response.reason_phrase}".strip()
        if 200 <= status < 300:
            return DeliveryOutcome.sent(msg.message_id, code=status, units=units)
        if status >= 500 or status in _RETRY_STATUSES:
            return DeliveryOutcome.temporary(msg.message_id, reason, code=status)
        return DeliveryOutcome.permanent(msg.message_id, reason, code=status)

    def send_batch(
        self, messages: Iterable[OutgoingMessage], done: Done | None = None
    ) -> list[DeliveryOutcome]:
        """POST each message; one outcome per message, in order (each to ``done``)."""
        return send_each(messages, lambda m: self.post(m, self._payload(m)), done)
