"""The operations store: small transactional records (SQLAlchemy 2; SQLite WAL or PostgreSQL).

Campaigns, outbox, consent ledger, audit log, model versions and segment definitions live here,
row by row, with transactions; the warehouse holds the large analytical tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from micromarketing.store.models import Base
from micromarketing.store.versions import raise_counters_to_stored


class OperationsStore:
    """Owns the SQLAlchemy engine and hands out sessions that commit or roll back as a unit."""

    def __init__(self, root: Path, url: str) -> None:
        self.url = _resolve_sqlite_url(root, url)
        self.engine: Engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        """Create missing tables and bring version counters up to the versions already stored."""
        Base.metadata.create_all(self.engine)
        with self.session() as session:
            raise_counters_to_stored(session)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _resolve_sqlite_url(root: Path, url: str) -> str:
    """Relative SQLite paths are relative to the workspace, not the current directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
