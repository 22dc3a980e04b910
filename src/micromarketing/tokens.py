"""Unsubscribe tokens and links: ``{public_url}/u/{token}`` with an opaque, URL-safe token that
maps back to the customer and cannot be forged without the workspace secret.

Token = base64url (no padding) of ``version ‖ tag ‖ (id XOR SHAKE-256(k_enc ‖ tag))`` with
``tag = HMAC-SHA256(k_mac, id)[:16]`` (a synthetic-IV construction: deterministic, so the same
customer always gets the same link, authenticated, and the id is not readable from the link).
Verifiable without a lookup table.  The secret comes from an environment
variable or a per-workspace file created on first use (:func:`load_or_create_secret`); no DB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from micromarketing.config import ServerSettings

_VERSION = b"\x01"
_MAC_BYTES = 16
_MAX_ID_BYTES = 512


def load_or_create_secret(path: Path) -> bytes:
    """The secret stored at ``path``, created (64 hex chars, mode 0600) if missing.

    Safe against two processes creating it at once: the loser reads the winner's file."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def server_secret(settings: ServerSettings, fallback_path: Path) -> bytes:
    """The token secret: ``settings.secret_env``'s value when set, else the file at
    ``fallback_path`` (created on first use)."""
    value = os.environ.get(settings.secret_env)
    return value.encode() if value else load_or_create_secret(fallback_path)


@functools.lru_cache(maxsize=16)  # two subkeys per secret, derived once instead of per token
def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"micromarketing-unsubscribe\x00" + purpose, hashlib.sha256).digest()


def _mac(secret: bytes, raw_id: bytes) -> bytes:
    return hmac.new(_subkey(secret, b"mac"), raw_id, hashlib.sha256).digest()[:_MAC_BYTES]


def _xor(secret: bytes, tag: bytes, data: bytes) -> bytes:
    stream = hashlib.shake_256(_subkey(secret, b"enc") + tag).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def unsubscribe_token(secret: bytes, customer_id: str) -> str:
    """The opaque URL-safe token for ``customer_id`` (the same on every call)."""
    raw_id = customer_id.encode()
    if not raw_id or len(raw_id) > _MAX_ID_BYTES:
        raise ValueError(f"customer id must be 1..{_MAX_ID_BYTES} bytes")
    tag = _mac(secret, raw_id)
    return base64.urlsafe_b64encode(_VERSION + tag + _xor(secret, tag, raw_id)).rstrip(b"=").decode()


def verify_token(secret: bytes, token: str) -> str | None:
    """The customer id ``token`` was issued for, or None when it is malformed, altered or was
    made with another secret."""
    if not token or len(token) > 1024:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:  # non-canonical encoding
        return None
    if len(raw) <= 1 + _MAC_BYTES or raw[:1] != _VERSION:
        return None
    tag = raw[1 : 1 + _MAC_BYTES]
    raw_id = _xor(secret, tag, raw[1 + _MAC_BYTES :])
    if not hmac.compare_digest(tag, _mac(secret, raw_id)):
        return None
    try:
        return raw_id.decode()
    except UnicodeDecodeError:
        return None


def unsubscribe_url(public_url: str, secret: bytes, customer_id: str) -> str:
    """``{public_url}/u/{token}`` for ``customer_id`` (the route the REST API serves)."""
    return f"{public_url.rstrip('/')}/u/{unsubscribe_token(secret, customer_id)}"
