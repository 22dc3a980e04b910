"""Version numbers of named objects, allocated in one place inside the caller's transaction.

``next_version`` bumps a counter row with ``UPDATE … RETURNING`` after an ``INSERT … ON CONFLICT
DO NOTHING`` creates it, so two concurrent allocations (threads, processes, a server and the
CLI) serialise on the row lock and never return the same number, on SQLite and PostgreSQL alike.
Nothing else computes "max(version) + 1".
"""

from __future__ import annotations

from sqlalchemy import case, func, literal, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from micromarketing.store.models import ModelVersion, Segment, SegmentVersion, Template, VersionCounter


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def next_version(session: Session, kind: str, name: str = "") -> int:
    """Allocate the next version of ``kind``/``name`` (1 for the first) in ``session``'s transaction."""
    insert = _insert(session)
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


def raise_counters_to_stored(session: Session) -> None:
    """Lift every counter to at least the highest version already stored for its object.

    Workspaces written before the counters existed hold versions the counters never saw; without
    this their next allocation would reuse a stored number.  Idempotent, so it runs on every open.
    """
    stored = union_all(
        select(ModelVersion.kind, literal(""), func.max(ModelVersion.version)).group_by(ModelVersion.kind),
        select(literal("segment"), Segment.name, func.max(SegmentVersion.version))
        .join(Segment, Segment.id == SegmentVersion.segment_id)
        .group_by(Segment.name),
        select(literal("template"), Template.name, func.max(Template.version)).group_by(Template.name),
    )
    rows = session.execute(stored).all()
    if not rows:
        return
    insert = _insert(session)(VersionCounter).values(
        [{"kind": kind, "name": name, "last": int(last)} for kind, name, last in rows]
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[VersionCounter.kind, VersionCounter.name],
            set_={
                "last": case(
                    (VersionCounter.last < insert.excluded.last, insert.excluded.last),
                    else_=VersionCounter.last,
                )
            },
        )
    )
