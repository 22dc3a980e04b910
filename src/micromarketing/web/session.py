"""The dashboard's login session: an API key exchanged for a signed cookie, and CSRF tokens.

A marketer pastes an API key once; the server checks it through ``ws.api_keys`` and answers with
a cookie that holds the key's id, its role and a random per-session CSRF token, signed with
itsdangerous (HttpOnly, SameSite=Strict, Secure over HTTPS, eight hours).  The key itself never
goes into the cookie: every request looks the id up again, so revoking a key ends its sessions.
Every POST must carry the session's CSRF token (form field ``csrf_token`` or the ``X-CSRF-Token``
header that htmx adds from ``<body hx-headers>``); the login form uses a double-submit token of
its own because there is no session yet.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from micromarketing.workspace import Workspace

SESSION_COOKIE = "mm_session"
LOGIN_COOKIE = "mm_login"
SESSION_SECONDS = 8 * 3600
SECRET_ENV = "MICROMARKETING_WEB_SECRET"
KEYS_TTL = 5.0  # seconds a lookup of the live keys is reused
ROLE_ORDER = ("viewer", "marketer", "admin")  # the API's order (api/auth.py)

# One secret per server process unless the operator sets one (then sessions survive restarts).
_serializer = URLSafeTimedSerializer(os.environ.get(SECRET_ENV) or secrets.token_hex(32), salt="mm-web")


@dataclass(frozen=True)
class WebUser:
    """Who is logged in: the key's id and role, and the session's CSRF token."""

    key_id: int
    role: str
    csrf: str

    def can(self, role: str) -> bool:
        """Whether this user's role is ``role`` or above (what the page may offer)."""
        return ROLE_ORDER.index(self.role) >= ROLE_ORDER.index(role)

    @property
    def actor(self) -> str:
        """The name the audit log gives this user's actions (the API's form, marked as the web)."""
        return f"web:key {self.key_id}"


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, htmx requests are told to."""


class Forbidden(Exception):
    """The session's role is too low, or a POST came without the session's CSRF token."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )


def start(ws: Workspace, key: str, request: Request, response: Response) -> WebUser | None:
    """Check ``key`` and, when it is live, set the session cookie on ``response``."""
    info = ws.api_keys.authenticate(key.strip())
    if info is None:
        return None
    user = WebUser(info.id, info.role, secrets.token_urlsafe(24))
    live_keys.forget()
    token = _serializer.dumps({"k": user.key_id, "r": user.role, "c": user.csrf})
    _set_cookie(response, request, SESSION_COOKIE, token, SESSION_SECONDS)
    return user


def end(response: Response) -> None:
    """Forget the session (logout)."""
    response.delete_cookie(SESSION_COOKIE, path="/")


class LiveKeys:
    """The ids and roles of the live API keys, looked up again after :data:`KEYS_TTL` seconds.

    Checking every request against the operations store would queue a page behind whatever slow
    request holds the workspace; a revoked key therefore loses its sessions within seconds."""

    def __init__(self) -> None:
        self._roles: dict[int, str] = {}
        self._read_at = -KEYS_TTL

    def roles(self, request: Request) -> dict[int, str]:
        if time.monotonic() - self._read_at >= KEYS_TTL:
            held = getattr(request.state, "workspace", None)  # this request holds it already
            if held is not None:
                self._roles = live_roles(held)
            else:
                with request.app.state.holder.use() as ws:
                    self._roles = live_roles(ws)
            self._read_at = time.monotonic()
        return self._roles

    def forget(self) -> None:
        """Read the keys again on the next request (after a login)."""
        self._read_at = -KEYS_TTL


def live_roles(ws: Workspace) -> dict[int, str]:
    """Role by id of every key that is not revoked."""
    return {k.id: k.role for k in ws.api_keys.list() if k.revoked_at is None}


live_keys = LiveKeys()


def current(request: Request) -> WebUser:
    """The logged-in user; :class:`LoginRequired` when the cookie is missing, forged, old or revoked."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        raise LoginRequired
    try:
        data = _serializer.loads(raw, max_age=SESSION_SECONDS)
        user = WebUser(int(data["k"]), str(data["r"]), str(data["c"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        raise LoginRequired from None
    if live_keys.roles(request).get(user.key_id) != user.role or user.role not in ROLE_ORDER:
        raise LoginRequired
    return user


def require(user: WebUser, role: str) -> None:
    """Refuse (403) what ``user``'s role may not do: the API's rule, held in the pages too."""
    if not user.can(role):
        raise Forbidden(f"this needs the {role} role; you are logged in as {user.role}")


async def check_csrf(request: Request, user: WebUser) -> None:
    """Refuse (403) a POST whose CSRF token is not the session's."""
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, user.csrf):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again")


def login_token(request: Request) -> str:
    """The login form's double-submit token: the one of the browser's cookie, else a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def remember_login_token(request: Request, response: Response, token: str) -> None:
    """Set the login form's token as a cookie (the form echoes it back)."""
    _set_cookie(response, request, LOGIN_COOKIE, token, 3600)


def login_token_ok(request: Request, sent: str) -> bool:
    """Whether the login form echoed the token of its cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE)
    return bool(cookie and sent and hmac.compare_digest(cookie, sent))
