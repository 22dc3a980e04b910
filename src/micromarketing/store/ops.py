"""The operations store: small transactional records (SQLAlchemy 2; SQLite WAL or PostgreSQL).

Campaigns, outbox, consent ledger, audit log, model versions and segment definitions live here,
row by row, with transactions; the warehouse holds the large analytical tables.

The schema is owned by the Alembic migrations in :mod:`micromarketing.store.migrations`:
:meth:`OperationsStore.create_all` upgrades to the head revision (a store made by the old
``metadata.create_all``, which has tables but no ``alembic_version``, is completed and stamped).
Two processes upgrading at once serialise: SQLite on ``BEGIN IMMEDIATE`` (after the switch to
WAL, which is retried: SQLite refuses it at once while another process switches), PostgreSQL on an
advisory lock.  SQLite runs with ``secure_delete`` on, so erased rows are overwritten with zeros
rather than left in free pages.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from micromarketing.store.models import AuditEvent, Base
from micromarketing.store.versions import raise_counters_to_stored

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001"  # the revision a store made by metadata.create_all is stamped at
_SQLITE_BUSY_SECONDS = 5.0  # how long a SQLite connection waits for another's lock
_ADVISORY_LOCK_KEY = 0x6D6D_6F70  # "mmop": serialises concurrent upgrades on PostgreSQL
# What an audit record must never hold (DESIGN: logs carry no contact points).
_EMAIL = re.compile(r"[^\s@<>\",;:()\[\]]+@[^\s@<>\"',;:()\[\]]+\.[A-Za-z]{2,}")
_PHONE_CANDIDATE = re.compile(r"(?<![\w.+])\+?\(?\d[\d ().-]{5,}\d(?![\w.])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class OperationsStore:
    """Owns the SQLAlchemy engine and hands out sessions that commit or roll back as a unit."""

    def __init__(self, root: Path, url: str) -> None:
        resolved = make_url(_resolve_sqlite_url(root, url))
        self.url = resolved.render_as_string(hide_password=True)
        self.engine: Engine = create_engine(resolved, **_engine_options(resolved.get_backend_name()))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Upgrade the schema to the head migration and lift version counters to stored versions.

        Cheap when the store is current (one query of ``alembic_version``), so it runs on every open.
        """
        if self.current_revision() != head_revision():
            with self._migration_connection() as conn:
                _upgrade(conn)
        with self.session() as session:
            raise_counters_to_stored(session)

    def current_revision(self) -> str | None:
        """The revision the store is at (None: never migrated)."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def _migration_connection(self) -> Iterator[Connection]:
        """A connection inside a transaction that only one upgrading process holds at a time."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # pysqlite would begin only at the first INSERT; take the write lock up front.
                driver = conn.connection.dbapi_connection
                assert driver is not None
                legacy = driver.isolation_level  # type: ignore[attr-defined]
                driver.isolation_level = None  # type: ignore[attr-defined]
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    driver.isolation_level = legacy  # type: ignore[attr-defined]
            else:
                with conn.begin():
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                    yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def checkpoint(self) -> None:
        """SQLite: move the write-ahead log into the database file and truncate it, so deleted
        rows (zeroed there by ``secure_delete``) do not linger in the log.  PostgreSQL: nothing
        (its ``VACUUM`` reclaims dead rows; see the README)."""
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the ops store (no ``alembic.ini``: everything is set here).

    With ``connection``, ``env.py`` migrates through it instead of opening its own.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this version of micromarketing."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(connection: Connection) -> list[Any]:
    """Alembic's diff between the database behind ``connection`` and ``Base.metadata`` (empty: same)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _upgrade(conn: Connection) -> None:
    """Upgrade to head inside ``conn``'s transaction; adopt a store made by ``create_all`` first."""
    existing = set(inspect(conn).get_table_names())
    if "alembic_version" not in existing and existing & set(Base.metadata.tables):
        _adopt_unversioned(conn)
    command.upgrade(alembic_config(conn), "head")


def _adopt_unversioned(conn: Connection) -> None:
    """Bring a store made by ``metadata.create_all`` (before migrations) to the baseline and stamp it.

    Such a store holds the tables (and columns) of the release that made it: the missing tables
    are created and the missing columns added, then it is stamped at the baseline revision.
    """
    Base.metadata.create_all(conn)
    ops = Operations(MigrationContext.configure(conn))
    for diff in schema_differences(conn):
        if isinstance(diff, tuple) and diff[0] == "add_column":
            _, _schema, table, column = diff
            ops.add_column(table, column._copy())
    command.stamp(alembic_config(conn), BASELINE_REVISION)


def _engine_options(backend: str) -> dict[str, Any]:
    """Engine options per backend: a server connection is checked before use and named."""
    if backend == "postgresql":
        return {
            "pool_pre_ping": True,  # a restarted server or a dropped idle connection is replaced
            "pool_size": 5,
            "max_overflow": 10,
            "connect_args": {"connect_timeout": 10, "application_name": "micromarketing"},
        }
    return {}


def _resolve_sqlite_url(root: Path, url: str) -> str:
    """Relative SQLite paths are relative to the workspace, not the current directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_SECONDS * 1000)}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
    cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, retrying while another connection is switching it.

    Switching a new file to WAL needs an exclusive lock, and SQLite reports "database is locked"
    at once, without waiting out ``busy_timeout``, when another process is switching the same
    file: two processes opening one new store failed in 28 of 100 tries before this retry.
    The mode is stored in the file, so the retry finds it already set.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def redact_contact_points(value: Any) -> Any:
    """``value`` with every email address and phone number replaced by ``[redacted]`` (recursively)."""
    if isinstance(value, str):
        return _PHONE_CANDIDATE.sub(_redact_phone, _EMAIL.sub("[redacted]", value))
    if isinstance(value, dict):
        return {redact_contact_points(k): redact_contact_points(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_contact_points(v) for v in value]
    return value


def _redact_phone(match: re.Match[str]) -> str:
    """A phone number: ``+`` and 7+ digits, 10+ digits, or 8+ digits written with separators.

    Dates (``2026-01-31``) and decimals (``0.12345678``) are left alone."""
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    separators = {c for c in text if not c.isdigit()} - {"+"}
    if _ISO_DATE.search(text) or separators == {"."} and text.count(".") == 1:
        return text
    if (text.startswith("+") and digits >= 7) or digits >= 10 or (separators and digits >= 8):
        return "[redacted]"
    return text


@event.listens_for(AuditEvent, "before_insert")
@event.listens_for(AuditEvent, "before_update")
def _audit_without_contact_points(_mapper, _connection, target: AuditEvent) -> None:  # type: ignore[no-untyped-def]
    """Every audit record, whoever writes it, is stripped of emails and phone numbers."""
    target.subject = redact_contact_points(target.subject)
    target.details = redact_contact_points(target.details or {})
