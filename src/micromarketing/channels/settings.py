"""Settings of the delivery channels (``[channels.*]``) and of the public server URL
(``[server] public_url``) that unsubscribe links point to.

These models are standalone so ``config.py`` can embed them as fields (``channels:
ChannelsSettings``, ``server: ServerSettings``); secrets are never stored in the TOML file:
each setting names the environment variable that holds the secret.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from micromarketing.channels.base import RetryPolicy
from micromarketing.errors import ConfigError


def secret_from_env(variable: str | None, *, required: bool = False) -> str | None:
    """The value of environment variable ``variable`` (None when unset or ``variable`` is None);
    raises ConfigError naming the variable when ``required`` and unset."""
    value = os.environ.get(variable) if variable else None
    if required and not value:
        raise ConfigError(f"environment variable {variable} is not set")
    return value or None


class EmailSettings(BaseModel):
    """``[channels.email]``: the SMTP relay, the sender and optional DKIM signing."""

    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    sender: str = "marketing@localhost"
    sender_name: str | None = None
    starttls: bool = False
    username: str | None = None
    password_env: str = "MICROMARKETING_SMTP_PASSWORD"
    timeout_seconds: float = Field(default=30.0, gt=0)
    dkim_key_path: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    rate_per_second: float | None = Field(default=None, gt=0)
    unsubscribe_mailto: str | None = None  # default: unsubscribe@{sender domain}

    @property
    def sender_domain(self) -> str:
        """The domain of ``sender`` (used for Message-ID and the default DKIM domain)."""
        return self.sender.rpartition("@")[2] or "localhost"

    @property
    def dkim_enabled(self) -> bool:
        """True when a DKIM key is configured (``campaign plan`` warns when it is not)."""
        return bool(self.dkim_key_path)


class WebhookSettings(BaseModel):
    """``[channels.webhook]``: where JSON deliveries go, signed with the Standard Webhooks secret
    (``whsec_…``) from ``secret_env``."""

    url: str | None = None
    secret_env: str = "MICROMARKETING_WEBHOOK_SECRET"
    timeout_seconds: float = Field(default=10.0, gt=0)


class SmsSettings(BaseModel):
    """``[channels.sms]``: an SMS provider reached through a signed webhook."""

    url: str | None = None
    secret_env: str = "MICROMARKETING_SMS_WEBHOOK_SECRET"
    sender_id: str | None = None
    default_country_code: str | None = Field(default=None, pattern=r"^[1-9]\d{0,2}$")
    cost_per_segment: float = Field(default=0.0, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


class ChannelsSettings(BaseModel):
    """``[channels]``: one table per channel plus the retry policy the outbox applies."""

    email: EmailSettings = Field(default_factory=EmailSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class ServerSettings(BaseModel):
    """``[server]``: the URL the public routes (``/u/{token}``) are reached at, and the env var
    holding the token secret (else a per-workspace secret file is created on first use)."""

    public_url: str = "http://127.0.0.1:8000"
    secret_env: str = "MICROMARKETING_SERVER__SECRET"
