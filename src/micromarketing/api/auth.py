"""API-key authentication and the three roles: viewer (read) < marketer (write) < admin (keys, privacy).

A key is sent as ``Authorization: Bearer mmk_…`` (or ``X-API-Key: mmk_…``).  No key or a key that
is unknown or revoked answers 401; a key whose role is too low answers 403; a key over its rate
answers 429.  Routes declare what they need with :data:`Viewer`, :data:`Marketer` or :data:`Admin`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from micromarketing.api.deps import WS
from micromarketing.api.problems import ApiProblem
from micromarketing.api.ratelimit import retry_after

_bearer = HTTPBearer(auto_error=False, description="an API key from `micromarketing apikey create`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")
ROLE_ORDER = ("viewer", "marketer", "admin")


def _key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return header or None


def require(role: str) -> Any:
    """A dependency that admits keys of ``role`` or above and returns the key's description."""

    def check(request: Request, ws: WS, key: Annotated[str | None, Depends(_key)]) -> Any:
        if not key:
            raise ApiProblem(401, "an API key is required", {"WWW-Authenticate": "Bearer"})
        info = ws.api_keys.authenticate(key)
        if info is None:
            raise ApiProblem(401, "the API key is unknown or revoked", {"WWW-Authenticate": "Bearer"})
        wait = request.app.state.limiter.hit(f"key:{info.id}")
        if wait is not None:
            raise ApiProblem(429, "rate limit exceeded for this API key", {"Retry-After": retry_after(wait)})
        if ROLE_ORDER.index(info.role) < ROLE_ORDER.index(role):
            raise ApiProblem(403, f"this needs the {role} role; the key is {info.role}")
        request.state.actor = f"api:key {info.id}"
        return info

    return check


Viewer = Depends(require("viewer"))
Marketer = Depends(require("marketer"))
Admin = Depends(require("admin"))


def actor(request: Request) -> str:
    """Who the audit log names for this request (``api:key 3``)."""
    return getattr(request.state, "actor", "api")


def client_limit(request: Request) -> None:
    """Rate limit for the public routes, per client address."""
    client = request.client.host if request.client else "unknown"
    wait = request.app.state.limiter.hit(f"ip:{client}")
    if wait is not None:
        raise ApiProblem(429, "too many requests", {"Retry-After": retry_after(wait)})
