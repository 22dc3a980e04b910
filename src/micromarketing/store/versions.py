"""Version numbers of named objects, allocated in one place inside the caller's transaction.

``next_version`` bumps a counter row with ``UPDATE … RETURNING`` after an ``INSERT … ON CONFLICT
DO NOTHING`` creates it, so two concurrent allocations (threads, processes, a server and the
CLI) serialise on the row lock and never return the same number, on SQLite and PostgreSQL alike.
Nothing else computes "max(version) + 1".
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from micromarketing.store.models import VersionCounter


def next_version(session: Session, kind: str, name: str = "") -> int:
    """Allocate the next version of ``kind``/``name`` (1 for the first) in ``session``'s transaction."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(VersionCounter).values(kind=kind, name=name, last=0).on_conflict_do_nothing()
    )
    allocated = session.execute(
        update(VersionCounter)
        .where(VersionCounter.kind == kind, VersionCounter.name == name)
        .values(last=VersionCounter.last + 1)
        .returning(VersionCounter.last)
    ).scalar_one()
    return int(allocated)


def latest_version(session: Session, kind: str, name: str = "") -> int | None:
    """The last version allocated to ``kind``/``name``, or None before the first."""
    return session.scalar(
        select(VersionCounter.last).where(VersionCounter.kind == kind, VersionCounter.name == name)
    )
