"""API keys of the REST API: created with a role, stored only as a hash, shown once, revocable.

A key is ``mmk_<prefix>_<secret>``: ``prefix`` (8 URL-safe characters) is stored in clear so a
key can be named in ``apikey list`` and logs; ``secret`` carries 256 random bits.  Because the key
itself is high-entropy, one SHA-256 over it is as good as a slow password hash (nothing to guess)
and keeps every authenticated request cheap.  Roles are ordered: viewer < marketer < admin.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from micromarketing.errors import InvalidInputError, NotFoundError
from micromarketing.store.context import StoreContext
from micromarketing.store.models import ApiKey

Role = Literal["viewer", "marketer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "marketer", "admin")
KEY_PREFIX = "mmk_"
_PREFIX_CHARS = 8
_LAST_USED_EVERY = timedelta(minutes=1)  # how stale last_used_at may get (spares a write per request)


class ApiKeyInfo(BaseModel):
    """A stored key as ``apikey list`` and the admin routes show it (never the key itself)."""

    id: int
    prefix: str
    role: Role
    name: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedApiKey(BaseModel):
    """A freshly created key: ``key`` is shown this once and never stored."""

    key: str
    id: int
    role: Role
    name: str
    prefix: str


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (viewer < marketer < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)  # type: ignore[arg-type]


def hash_key(key: str) -> str:
    """The stored form of ``key`` (SHA-256 hex; the key has 256 bits of entropy)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        prefix=row.prefix,
        role=row.role,  # type: ignore[arg-type]
        name=row.name,
        created_at=_aware(row.created_at),
        last_used_at=_aware(row.last_used_at),
        revoked_at=_aware(row.revoked_at),
    )


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class ApiKeys:
    """The ``ws.api_keys`` sub-facade: create, list, revoke and authenticate keys."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def create(self, role: str, name: str = "", *, actor: str = "cli") -> CreatedApiKey:
        """Create a key with ``role``; the returned ``key`` is the only copy there will be."""
        if role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r} (use one of: {', '.join(ROLES)})")
        if len(name) > 128:
            raise InvalidInputError("key name: at most 128 characters")
        prefix = secrets.token_urlsafe(6)[:_PREFIX_CHARS].replace("_", "x").replace("-", "y")
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        with self.ctx.ops.session() as session:
            row = ApiKey(prefix=prefix, key_hash=hash_key(key), role=role, name=name)
            session.add(row)
            session.flush()
            key_id = row.id
        self.ctx.audit("apikey.create", f"key {key_id}", {"role": role, "name": name}, actor=actor)
        return CreatedApiKey(key=key, id=key_id, role=role, name=name, prefix=prefix)  # type: ignore[arg-type]

    def list(self, *, limit: int | None = None, offset: int = 0) -> list[ApiKeyInfo]:
        """Every key (revoked ones too), oldest first."""
        with self.ctx.ops.session() as session:
            query = select(ApiKey).order_by(ApiKey.id).offset(offset)
            if limit is not None:
                query = query.limit(limit)
            return [_info(row) for row in session.scalars(query)]

    def revoke(self, key_id: int, *, actor: str = "cli") -> ApiKeyInfo:
        """Revoke key ``key_id`` (idempotent: a revoked key keeps its first revocation time)."""
        with self.ctx.ops.session() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFoundError(f"no API key with id {key_id}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            info = _info(row)
        self.ctx.audit("apikey.revoke", f"key {key_id}", {}, actor=actor)
        return info

    def authenticate(self, key: str) -> ApiKeyInfo | None:
        """The live key ``key`` is, or None (unknown, malformed or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        now = datetime.now(UTC)
        with self.ctx.ops.session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            if row is None or row.revoked_at is not None:
                return None
            last = _aware(row.last_used_at)
            if last is None or now - last > _LAST_USED_EVERY:
                row.last_used_at = now
            return _info(row)
