"""The audit log: who did what, when, with which parameters — never an email or phone number.

Records are appended through ``StoreContext.audit`` (every domain package uses it); the
operations store strips contact points from every record it writes (see
:mod:`micromarketing.store.ops`).  This module reads the log back for ``micromarketing audit``.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select

from micromarketing.privacy.results import AuditEntry
from micromarketing.store.models import AuditEvent

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext


def cli_actor() -> str:
    """``cli:<login name>``: who runs a command from a shell."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "cli"


def _matching(query: Select[Any], since: datetime | None, action: str | None) -> Select[Any]:
    if since is not None:
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        query = query.where(AuditEvent.at >= since)
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True) if action.endswith(".")
                            else AuditEvent.action == action)
    return query


def audit_log(
    ctx: StoreContext, *, since: datetime | None = None, action: str | None = None, limit: int = 1000,
    offset: int = 0,
) -> list[AuditEntry]:
    """The newest ``limit`` records at or after ``since`` (optionally one action, or a prefix
    ending in ``.`` such as ``privacy.``), skipping the ``offset`` newest, oldest first."""
    query = _matching(select(AuditEvent), since, action).order_by(AuditEvent.id.desc())
    with ctx.ops.session() as s:
        events = list(s.scalars(query.limit(limit).offset(offset)))
    return [
        AuditEntry(id=e.id, at=e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC), actor=e.actor,
                   action=e.action, subject=e.subject, details=e.details or {})
        for e in reversed(events)
    ]


def audit_count(ctx: StoreContext, *, since: datetime | None = None, action: str | None = None) -> int:
    """How many records :func:`audit_log` could return with the same filters (for paging)."""
    with ctx.ops.session() as s:
        return int(s.scalar(_matching(select(func.count()).select_from(AuditEvent), since, action)) or 0)
