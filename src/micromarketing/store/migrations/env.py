"""Alembic environment: migrates the connection ``OperationsStore`` passes in (or a URL's)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from micromarketing.store.models import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite cannot ALTER most things in place, Alembic rebuilds the table.
    context.configure(
        connection=conn, target_metadata=Base.metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        _run(conn)
        conn.commit()
