"""The analytical store: Ibis over DuckDB (embedded default) or Apache Spark.

Everything above this module builds Ibis expressions; this module owns the connection, the DDL
derived from :mod:`micromarketing.store.schema`, and the few operations Ibis has no portable verb
for (composite-key upserts).  DuckDB allows one read-write process per file, so the connection is
opened lazily and closed with the workspace.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import ibis
import ibis.expr.types as ir

from micromarketing.config import Settings
from micromarketing.errors import DataError, WorkspaceError
from micromarketing.store.lock import remove_holder, wait_for, write_holder
from micromarketing.store.rollups import ROLLUPS, Rollup, rebuilt_by, refreshed_by
from micromarketing.store.schema import SQL_TYPES, TABLES, TableSpec, create_table_ddl

ROLLUP_DEFINITIONS = "rollup_definitions"  # which definition each maintained rollup was built by
# Tables the segment of one reads one customer at a time: an ART index on customer_id makes each
# read an index scan (~1 ms at a million customers) instead of a scan of the whole table.  The
# warehouse keeps the index on every path that creates or replaces one of them.
CUSTOMER_KEYED = ("transactions", "consent", "profiles", "segment_members")
_TABLE_NAMES = "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _writes(method: F) -> F:
    """Mark a method that may change what the warehouse holds: it drops what :meth:`Warehouse.memo`
    remembered (before, and after, since a write that fails half-way changed something too)."""

    @functools.wraps(method)
    def wrapper(self: Warehouse, *args: Any, **kwargs: Any) -> Any:
        self.changed()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.changed()

    return wrapper  # type: ignore[return-value]


class Warehouse:
    """Lazily connected Ibis backend plus the table operations the domain packages need."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self._con: Any = None
        self._memo: dict[str, Any] = {}

    # -- connection -------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.settings.warehouse.backend

    @property
    def path(self) -> Path:
        return self.root / self.settings.warehouse.path

    @property
    def con(self) -> Any:
        """The Ibis backend, connected on first use."""
        if self._con is None:
            self._con = self._connect()
            if self.backend_name == "duckdb":
                self.ensure_schema()  # a workspace made by an older version gains new tables
        return self._con

    def _connect(self) -> Any:
        cfg = self.settings.warehouse
        if cfg.backend == "duckdb":
            # one process per file: wait for a running command (it is named), then BusyError
            con = wait_for(lambda: ibis.duckdb.connect(str(self.path)), self.path, cfg.lock_timeout)
            write_holder(self.path)
            con.raw_sql("SET TimeZone = 'UTC'")
            con.raw_sql("SET enable_progress_bar = false")  # the CLI draws its own progress bars
            if cfg.threads:
                con.raw_sql(f"SET threads = {int(cfg.threads)}")
            if cfg.memory_limit:
                con.raw_sql(f"SET memory_limit = '{_quote(cfg.memory_limit)}'")
            return con
        raise WorkspaceError(f"unknown warehouse backend {cfg.backend!r}")

    def close(self) -> None:
        if self._con is not None and self.backend_name == "duckdb":
            self._con.disconnect()
            remove_holder(self.path)
        self._con = None
        self.changed()

    # -- what this process knows about the warehouse -----------------------------------------
    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, remembered under ``key`` until the warehouse changes or is let go of.

        DuckDB lets one process hold the file, so while this process holds it nobody else writes
        to it: what was derived from it stays right until one of our own writes (each write
        method is marked :func:`_writes`; other code that changes what a value depends on calls
        :meth:`changed`) or the connection closes, after which a command may have written.  The
        segment of one asks the same few questions on every lookup.  Other backends' tables have
        other writers, so there nothing is remembered."""
        if self.backend_name != "duckdb":
            return compute()
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def changed(self) -> None:
        """Forget what :meth:`memo` remembered (the warehouse, or a record about it, changed)."""
        self._memo.clear()

    def table_names(self) -> frozenset[str]:
        """The names of the stored tables (temp tables excluded), remembered as :meth:`memo` does."""
        if self.backend_name != "duckdb":
            return frozenset(self.con.list_tables())
        return self.memo("table_names", lambda: frozenset(r["table_name"] for r in self.fetch(_TABLE_NAMES)))

    # -- schema -----------------------------------------------------------------------------
    @_writes
    def ensure_schema(self) -> None:
        """Create the ingestible tables (keys become primary keys) and their rollups if missing."""
        existing = set(self.con.list_tables())
        for spec in TABLES.values():
            if spec.name not in existing:
                self.con.raw_sql(create_table_ddl(spec, "duckdb"))
                continue
            # a workspace made by an older version gains the columns added since (keys unchanged)
            have = set(self.con.table(spec.name).columns)
            for col in spec.columns + spec.derived + spec.maintained:
                if col.name not in have:
                    default = f" DEFAULT '{_quote(col.default)}'" if col.default is not None else ""
                    self.con.raw_sql(
                        f"ALTER TABLE {_ident(spec.name)} ADD COLUMN {_ident(col.name)} "
                        f"{SQL_TYPES[col.type]}{default}"
                    )
        self._ensure_rollups(existing)
        for name in CUSTOMER_KEYED:
            if name in TABLES or name in existing:
                self._index_customers(name)

    def _index_customers(self, name: str) -> None:
        """Give table ``name`` its customer_id index if it is one of :data:`CUSTOMER_KEYED`."""
        if name in CUSTOMER_KEYED:
            index = _customer_index(name)
            self.raw_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {_ident(name)} (customer_id)")

    def _ensure_rollups(self, existing: set[str]) -> None:
        """Build, from every stored source row, each rollup that is missing or stale.

        A rollup is stale when the SQL of its definition differs from the one it was built with
        (a workspace made by an older version), which ``rollup_definitions`` records.
        """
        if ROLLUP_DEFINITIONS not in existing:
            self.raw_sql(f"CREATE TABLE {ROLLUP_DEFINITIONS} (name VARCHAR PRIMARY KEY, sql_sha256 VARCHAR)")
        built = dict(self.raw_sql(f"SELECT name, sql_sha256 FROM {ROLLUP_DEFINITIONS}").fetchall())
        for rollup in ROLLUPS.values():
            expr = self._build(rollup, self.con.table(rollup.source))
            digest = hashlib.sha256(str(self.con.compile(expr)).encode()).hexdigest()
            if rollup.name in existing and built.get(rollup.name) == digest:
                continue
            self.con.create_table(rollup.name, expr, overwrite=True)
            self.con.con.execute(
                f"INSERT OR REPLACE INTO {ROLLUP_DEFINITIONS} VALUES (?, ?)", [rollup.name, digest]
            )

    def has_table(self, name: str) -> bool:
        return name in self.con.list_tables()

    def table(self, name: str) -> ir.Table:
        """The named table as an Ibis expression."""
        if not self.has_table(name):
            raise DataError(f"table {name!r} does not exist yet (ingest data or run `profile` first)")
        return self.con.table(name)

    # -- writes -----------------------------------------------------------------------------
    @_writes
    def upsert(self, name: str, rows: ir.Table) -> int:
        """Insert ``rows`` into table ``name``, replacing rows with the same key; returns the count.

        The table's primary key (from the schema) decides what "the same row" means, so
        re-ingesting a file leaves the table unchanged.  Maintained columns and the table's
        rollups are brought up to date in the same transaction: a crash leaves either the old
        state or the new one, never a rollup that disagrees with its source.
        """
        spec = TABLES[name]
        columns = [c for c in rows.columns]
        rows = rows.select(*columns)
        # Compiling by hand skips Ibis' registration of in-memory tables; do it explicitly.
        self.con._run_pre_execute_hooks(rows)
        select_sql = self.con.compile(rows)
        cols = ", ".join(_ident(c) for c in columns)
        refreshed, rebuilt = refreshed_by(spec.name), rebuilt_by(spec.name)
        # Into an empty table (the first bulk load) every customer is new: the rollups are built
        # whole, with no need to work out whom the write touches.
        first_load = self._count(spec.name) == 0
        incremental = bool(refreshed) and not first_load
        # Into an empty table the customer_id index is built after the load is committed: built
        # inside the transaction, DuckDB adds the rows to it one by one at commit, which doubled
        # the load's time.  (Should the process die in between, the next connect builds it.)
        reindex = first_load and spec.name in CUSTOMER_KEYED
        raw = self.con.con
        raw.execute("BEGIN TRANSACTION")
        try:
            if reindex:
                raw.execute(f"DROP INDEX IF EXISTS {_customer_index(spec.name)}")
            if incremental:
                # The rows are read twice (affected customers, then the insert): compute them once.
                raw.execute(f"CREATE OR REPLACE TEMP TABLE _upsert_rows AS {select_sql}")
                select_sql = f"SELECT {cols} FROM _upsert_rows"
                self._note_affected_customers(spec, refreshed)
            written = raw.execute(
                f"INSERT OR REPLACE INTO {_ident(spec.name)} ({cols}) {select_sql}"
            ).fetchone()  # DuckDB answers an INSERT with its row count: no second pass
            if spec.name == "transactions":
                self._refresh_order_heads()
            for rollup in refreshed:
                self._refresh_rollup(rollup, only_affected=incremental)
            for rollup in rebuilt:
                self._refresh_rollup(rollup, only_affected=False)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        finally:
            if incremental:
                raw.execute("DROP TABLE IF EXISTS _upsert_rows")
                raw.execute("DROP TABLE IF EXISTS _affected_customers")
        if reindex:
            self._index_customers(spec.name)
        return int(written[0]) if written else 0

    # -- deletes (privacy: erasure and retention) -------------------------------------------
    def base_tables(self) -> dict[str, list[str]]:
        """Every stored table (temp tables excluded) and its columns."""
        rows = self.con.con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            tables.setdefault(table, []).append(column)
        return tables

    @_writes
    def delete_matching(self, matches: dict[str, list[str]], *, dry_run: bool = False) -> dict[str, int]:
        """Delete, from every table having one of the columns, the rows whose value (as text) is
        one of ``matches[column]``; returns the rows deleted (or, with ``dry_run``, found) per table.

        One transaction; rollups are tables with ``customer_id`` too, so they lose the same
        customers' rows and stay consistent with their sources.
        """
        counts: dict[str, int] = {}
        raw = self.con.con
        raw.execute("BEGIN TRANSACTION")
        try:
            for table, columns in self.base_tables().items():
                used = [c for c in columns if matches.get(c)]
                if not used:
                    continue
                where = " OR ".join(
                    f"CAST({_ident(c)} AS VARCHAR) IN ({', '.join('?' * len(matches[c]))})" for c in used
                )
                params = [v for c in used for v in matches[c]]
                found = raw.execute(f"SELECT count(*) FROM {_ident(table)} WHERE {where}", params).fetchone()
                if found and found[0]:
                    counts[table] = int(found[0])
                    if not dry_run:
                        raw.execute(f"DELETE FROM {_ident(table)} WHERE {where}", params)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        return counts

    @_writes
    def delete_before(self, name: str, column: str, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Delete the rows of ``name`` whose ``column`` is before ``cutoff``; returns how many.

        The rollups of ``name`` are refreshed for the customers who lost rows, in the same
        transaction (with ``dry_run`` nothing is deleted, the count is what would be).
        """
        if column not in self.con.table(name).columns:
            raise DataError(f"table {name!r} has no column {column!r}")
        raw = self.con.con
        where = f"{_ident(column)} < ?"
        found = raw.execute(f"SELECT count(*) FROM {_ident(name)} WHERE {where}", [cutoff]).fetchone()
        count = int(found[0]) if found else 0
        if dry_run or not count:
            return count
        refreshed, rebuilt = refreshed_by(name), rebuilt_by(name)
        raw.execute("BEGIN TRANSACTION")
        try:
            if refreshed:
                raw.execute(
                    "CREATE OR REPLACE TEMP TABLE _affected_customers AS SELECT DISTINCT customer_id "
                    f"FROM {_ident(name)} WHERE {where}", [cutoff],
                )
            raw.execute(f"DELETE FROM {_ident(name)} WHERE {where}", [cutoff])
            for rollup in refreshed:
                self._refresh_rollup(rollup, only_affected=True)
            for rollup in rebuilt:
                self._refresh_rollup(rollup, only_affected=False)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        finally:
            raw.execute("DROP TABLE IF EXISTS _affected_customers")
        return count

    def checkpoint(self) -> None:
        """Write the WAL into the database file (deleted rows leave the log; see the README)."""
        self.raw_sql("CHECKPOINT")

    def _note_affected_customers(self, spec: TableSpec, rollups: tuple[Rollup, ...]) -> None:
        """Temp table ``_affected_customers``: whose rollup rows the pending write can change.

        The customers of the written rows, plus those of stored rows sharing a rollup's
        ``touches`` columns with them (read before the write replaces them).
        """
        touched = "".join(
            f" UNION SELECT s.customer_id FROM {_ident(spec.name)} AS s SEMI JOIN _upsert_rows AS u "
            f"USING ({', '.join(_ident(c) for c in r.touches)})"
            for r in rollups
            if r.touches
        )
        self.raw_sql(
            "CREATE OR REPLACE TEMP TABLE _affected_customers AS "
            f"SELECT customer_id FROM _upsert_rows{touched}"
        )

    def _refresh_rollup(self, rollup: Rollup, *, only_affected: bool) -> None:
        """Recompute the rollup rows of the customers in ``_affected_customers`` (or of everyone)."""
        source = self.con.table(rollup.source)
        scope = ""
        if only_affected:
            affected = self.con.table("_affected_customers")
            source = source.filter(source.customer_id.isin(affected.customer_id))
            scope = " WHERE customer_id IN (SELECT customer_id FROM _affected_customers)"
        target = self.con.table(rollup.name)
        fresh = self._build(rollup, source).select(*target.columns)
        self.raw_sql(f"DELETE FROM {_ident(rollup.name)}{scope}")
        self.raw_sql(f"INSERT INTO {_ident(rollup.name)} {self.con.compile(fresh)}")

    def _build(self, rollup: Rollup, source: ir.Table) -> ir.Table:
        return rollup.build(source, *(self.table(name) for name in rollup.inputs))

    def rollup(self, name: str, before: datetime | None = None) -> ir.Table:
        """Rollup ``name`` (one row per customer) over the source rows strictly before ``before``.

        The maintained table when every stored row is older than ``before`` (or ``before`` is
        None, or the rollup has no time), else the same expression computed over the filtered
        source (see :mod:`micromarketing.store.rollups`).  A backend that holds no copy of the
        maintained table (Spark without it) computes it.
        """
        rollup = ROLLUPS[name]
        if self.has_table(rollup.name):
            table = self.con.table(rollup.name)
            if before is None or rollup.newest is None:
                return table
            newest = table[rollup.newest].max().to_pyarrow().as_py()
            if newest is not None and newest.tzinfo is None:  # Spark hands back naive UTC
                newest = newest.replace(tzinfo=UTC)
            if newest is None or newest < before:
                return table
        source = self.table(rollup.source)
        if before is not None and rollup.time is not None:
            source = source.filter(source[rollup.time] < before)
        return self._build(rollup, source)

    def _refresh_order_heads(self) -> None:
        """Set ``order_head`` on every order that has a line without it.

        A new line arrives with ``order_head`` NULL, so the orders it joins are exactly those to
        recompute; a replaced line keeps its flag, which stays right because replacing a line
        does not change which line numbers its order has.
        """
        self.con.raw_sql(
            "UPDATE transactions AS t SET order_head = (t.line_no = h.first_line) "
            "FROM (SELECT order_id, min(line_no) AS first_line FROM transactions "
            "WHERE order_id IN (SELECT order_id FROM transactions WHERE order_head IS NULL) "
            "GROUP BY order_id) AS h WHERE t.order_id = h.order_id"
        )

    @_writes
    def replace_table(self, name: str, expr: ir.Table) -> ir.Table:
        """Materialise ``expr`` as table ``name`` (replacing it) and return the new table."""
        table = self.con.create_table(name, expr, overwrite=True)
        self._index_customers(name)
        return table

    @_writes
    def create_from(self, name: str, data: Any) -> ir.Table:
        """Materialise an in-memory dataframe/arrow table as ``name`` (replacing it)."""
        table = self.con.create_table(name, data, overwrite=True)
        self._index_customers(name)
        return table

    def read_file(self, path: Path) -> ir.Table:
        """Read a CSV, Parquet or JSONL file as an Ibis table (CSV and JSONL as text columns)."""
        suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
        if suffix in {".csv", ".csv.gz"}:
            return self.con.read_csv(str(path), all_varchar=True, header=True)
        if suffix == ".parquet":
            return self.con.read_parquet(str(path))
        if suffix in {".jsonl", ".ndjson", ".json", ".jsonl.gz"}:
            return self.con.read_json(str(path), format="newline_delimited")
        raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .parquet or .jsonl)")

    def compile(self, expr: ir.Expr, dialect: str | None = None, *, pretty: bool = False) -> str:
        """The SQL for ``expr`` in ``dialect`` (default: this backend's), for `segment sql` and snapshots.

        The backend's own dialect is compiled by the connected backend (exactly what runs); another
        dialect ("duckdb" or "spark") goes through that Ibis compiler without a connection.  Table
        names are printed unqualified (no catalog/database) so the text does not depend on where
        the workspace lives.
        """
        import sqlglot
        import sqlglot.expressions as sge

        target = {"pyspark": "spark"}.get(dialect or self.backend_name, dialect or self.backend_name)
        native = {"duckdb": "duckdb", "spark": "spark"}[self.backend_name]
        if target == native:
            sql = str(self.con.compile(expr))
        elif target == "spark":
            _ = ibis.pyspark  # registers ibis.options.pyspark, which the compiler reads
            from ibis.backends.sql.compilers.pyspark import compiler as spark_compiler

            sql = spark_compiler.to_sqlglot(expr).sql(dialect="spark")
        elif target == "duckdb":
            from ibis.backends.sql.compilers.duckdb import compiler as duckdb_compiler

            sql = duckdb_compiler.to_sqlglot(expr).sql(dialect="duckdb")
        else:
            raise WorkspaceError(f"unknown SQL dialect {dialect!r} (use duckdb or spark)")
        tree = sqlglot.parse_one(sql, dialect=target)
        for table in tree.find_all(sge.Table):
            table.set("catalog", None)
            table.set("db", None)
        return tree.sql(dialect=target, pretty=pretty)

    @_writes
    def replace_rows(self, name: str, rows: ir.Table, match: dict[str, Any]) -> int:
        """Replace the rows of table ``name`` that ``match`` selects by ``rows``; returns the count.

        ``match`` maps a column to a value it must equal, or to a list (tuple, set) of values it
        must be one of: ``{"segment": ["a", "b"], "as_of": d}`` replaces the rows of both
        segments on that date in one write, which on engines that rewrite the whole table (Spark)
        costs one rewrite instead of one per segment.  Creates the table (with ``rows``' schema)
        when it does not exist.  The delete uses bound parameters and runs in one transaction with
        the insert (Spark's override rewrites the table in one job).
        """
        if not self.has_table(name):
            self.con.create_table(name, schema=rows.schema())
            self._index_customers(name)
        schema = self.con.table(name).schema()
        rows = rows.select(*schema.names).cast(schema)
        self.con._run_pre_execute_hooks(rows)
        select_sql = self.con.compile(rows)
        where, params = _where(match)
        raw = self.con.con
        raw.execute("BEGIN TRANSACTION")
        try:
            raw.execute(f"DELETE FROM {_ident(name)} WHERE {where}", params)
            raw.execute(f"INSERT INTO {_ident(name)} {select_sql}")
            raw.execute("COMMIT")
        except Exception:
            raw.execute("ROLLBACK")
            raise
        table = self.con.table(name)
        return int(table.filter(matching(table, match)).count().execute())

    @_writes
    def load_tables_from(self, source: Warehouse, names: list[str] | None = None) -> list[str]:
        """Copy tables from another warehouse (e.g. DuckDB into Spark for parity tests); returns names.

        Data goes through Arrow/pandas in the driver, so this is for test- and demo-sized tables.
        """
        copied = []
        for name in names or sorted(source.con.list_tables()):
            if not source.has_table(name):
                continue
            data = source.con.table(name).to_pyarrow()
            if self.backend_name == "spark":
                frame = data.to_pandas()
                # Spark infers types per column from pandas; an all-null column has none.
                schema = source.con.table(name).schema()
                self.con.create_table(name, frame, schema=schema, overwrite=True)
            else:
                self.con.create_table(name, data, overwrite=True)
            copied.append(name)
        return copied

    # -- staging (ingest) -------------------------------------------------------------------
    def stage_text(
        self,
        path: Path,
        name: str,
        columns: Sequence[str],
        *,
        header: bool = True,
        delim: str = ",",
        quote: str = '"',
    ) -> tuple[ir.Table, ir.Table]:
        """Load a delimited text file into temp table ``name`` as text, numbering its records.

        Returns ``(rows, rejects)``.  ``rows`` (a temp view over temp table ``<name>_raw``;
        :meth:`drop_temp` of ``name`` drops both) has ``_row`` (1-based record number, header
        excluded, counting unparsable records too) and one VARCHAR column per name in
        ``columns``.  ``rejects`` (temp table ``<name>_rejects``) lists the records the reader
        could not parse (ragged rows, invalid UTF-8, unterminated quotes) with ``_row``,
        ``_field``, ``_error`` (DuckDB's error type, e.g. ``TOO MANY COLUMNS``), ``_reason``
        (its message) and ``_raw`` (the record's text).  Numbers come from DuckDB's
        insertion order (``rowid``) plus the rejects' record numbers, so the read stays
        parallel.  Raises :class:`DataError` when DuckDB cannot read the file at all.
        """
        errors, scans, raw = f"{name}_errors", f"{name}_scans", f"{name}_raw"
        struct = ", ".join(f"'{_quote(c)}': 'VARCHAR'" for c in columns)
        options = (
            f"columns = {{{struct}}}, header = {str(header).lower()}, auto_detect = false, "
            f"delim = '{_quote(delim)}', quote = '{_quote(quote)}', escape = '{_quote(quote)}', "
            f"store_rejects = true, rejects_table = '{errors}', rejects_scan = '{scans}'"
        )
        try:
            self.raw_sql(
                f"CREATE OR REPLACE TEMP TABLE {_ident(raw)} AS "
                f"SELECT * FROM read_csv('{_quote(str(path))}', {options})"
            )
        except Exception as exc:  # duckdb.Error; its message names the line when DuckDB knows it
            raise DataError(f"{path}: cannot be read: {_first_line(exc)}") from None
        # One reject per unparsable record (its first error).  DuckDB's `line` counts records
        # (a quoted newline does not start a new one) and includes the header line.
        offset = 1 if header else 0
        self.raw_sql(
            f"CREATE OR REPLACE TEMP TABLE {_ident(name + '_rejects')} AS "
            f"SELECT CAST(line - {offset} AS BIGINT) AS _row, "
            f"arg_min(coalesce(column_name, ''), column_idx) AS _field, "
            f"arg_min(CAST(error_type AS VARCHAR), column_idx) AS _error, "
            f"arg_min(error_message, column_idx) AS _reason, "
            f"arg_min(trim(csv_line, chr(10) || chr(13)), column_idx) AS _raw "
            f"FROM {_ident(errors)} GROUP BY line"
        )
        cols = ", ".join(_ident(c) for c in columns)
        if self._count(name + "_rejects"):
            # Accepted record k (file order) is record k + #{rejects j : r_j - j < k}.
            sql = (
                f"WITH r AS (SELECT _row - row_number() OVER (ORDER BY _row) AS before, "
                f"row_number() OVER (ORDER BY _row) AS skipped FROM {_ident(name + '_rejects')}), "
                f"g AS (SELECT before, max(skipped) AS skipped FROM r GROUP BY before), "
                f"s AS (SELECT rowid + 1 AS _k, * FROM {_ident(raw)}) "
                f"SELECT CAST(s._k + coalesce(g.skipped, 0) AS BIGINT) AS _row, {cols} "
                f"FROM s ASOF LEFT JOIN g ON s._k > g.before"
            )
        else:
            sql = f"SELECT CAST(rowid + 1 AS BIGINT) AS _row, {cols} FROM {_ident(raw)}"
        # A view over the raw table: numbering costs nothing and the data is not copied again.
        self.raw_sql(f"CREATE OR REPLACE TEMP VIEW {_ident(name)} AS {sql}")
        for table in (errors, scans):
            self.drop_temp(table)
        return self.con.table(name), self.con.table(name + "_rejects")

    def stage_jsonl(self, path: Path, name: str) -> tuple[ir.Table, ir.Table]:
        """Load a JSON-lines file into temp table ``name``: ``_row`` (the line number) and one
        VARCHAR column per top-level key found in any line (scalars as text, nested values as
        JSON text).  Blank lines are skipped; lines that are not a JSON object, or not UTF-8, go
        to ``rejects`` (temp table ``<name>_rejects``, columns as in :meth:`stage_text`;
        ``_error`` is ``INVALID JSON`` or ``NOT AN OBJECT`` for lines that do not parse).
        Keys that differ only by case or surrounding spaces (``Customer_ID``, ``customer_id``)
        share one column; a line holding more than one of them is rejected (``DUPLICATE KEY``,
        ``_field`` the lower-cased key), since which value is meant cannot be known.
        """
        # One text column per line: a record separator as delimiter, no quoting.
        self.stage_text(path, f"{name}_lines", ["_line"], header=False, delim="\x1e", quote="")
        src, rej = _ident(f"{name}_lines"), _ident(f"{name}_lines_rejects")
        # CASE guards the JSON functions: AND does not short-circuit, and they raise on bad JSON.
        ok = "coalesce(CASE WHEN json_valid(_line) THEN json_type(_line) = 'OBJECT' END, false)"
        obj = f"CASE WHEN {ok} THEN _line ELSE '{{}}' END"
        keys = [
            r[0]
            for r in self.raw_sql(
                f"SELECT DISTINCT unnest(json_keys({obj})) AS k FROM {src} WHERE _line IS NOT NULL "
                f"ORDER BY k"
            ).fetchall()
        ]
        pointer = {k: "/" + k.replace("~", "~0").replace("/", "~1") for k in keys}
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(k.strip().lower(), []).append(k)

        def value(k: str) -> str:
            return f"json_extract_string({obj}, '{_quote(pointer[k])}')"

        cols = "".join(
            f", coalesce({', '.join(value(k) for k in ks)}) AS {_ident(ks[0])}" if len(ks) > 1
            else f", {value(ks[0])} AS {_ident(ks[0])}"
            for ks in groups.values()
        )
        def count(ks: list[str]) -> str:
            return " + ".join(f"CAST(json_exists({obj}, '{_quote(pointer[k])}') AS INT)" for k in ks)

        clashes = [(low, ks, f"{count(ks)} > 1") for low, ks in groups.items() if len(ks) > 1]
        clash = " OR ".join(f"({cond})" for _, _, cond in clashes) or "false"
        self.raw_sql(
            f"CREATE OR REPLACE TEMP TABLE {_ident(name)} AS SELECT _row{cols} FROM {src} "
            f"WHERE _line IS NOT NULL AND {ok} AND NOT ({clash})"
        )
        clash_rejects = ""
        if clashes:
            field = " ".join(f"WHEN {cond} THEN '{_quote(low)}'" for low, _, cond in clashes)
            why = " ".join(
                f"WHEN {cond} THEN '{_quote('the line holds ' + ' and '.join(ks))}'"
                for _, ks, cond in clashes
            )
            clash_rejects = (
                f" UNION ALL SELECT _row, CASE {field} END AS _field, 'DUPLICATE KEY' AS _error, "
                f"CASE {why} END AS _reason, _line AS _raw FROM {src} "
                f"WHERE _line IS NOT NULL AND {ok} AND ({clash})"
            )
        self.raw_sql(
            f"CREATE OR REPLACE TEMP TABLE {_ident(name + '_rejects')} AS "
            f"SELECT _row, '' AS _field, _error, _reason, _raw FROM {rej} UNION ALL "
            f"SELECT _row, '' AS _field, CASE WHEN json_valid(_line) THEN 'NOT AN OBJECT' "
            f"ELSE 'INVALID JSON' END AS _error, CASE WHEN json_valid(_line) THEN "
            f"'the line is JSON but not an object' ELSE 'the line is not valid JSON' END AS _reason, "
            f"_line AS _raw FROM {src} "
            f"WHERE _line IS NOT NULL AND NOT {ok}{clash_rejects}"
        )
        self.drop_temp(f"{name}_lines")
        self.drop_temp(f"{name}_lines_rejects")
        return self.con.table(name), self.con.table(name + "_rejects")

    def stage_parquet(self, path: Path, name: str) -> ir.Table:
        """Load a Parquet file into temp table ``name``: ``_row`` (1-based) and every column as text."""
        source = f"read_parquet('{_quote(str(path))}', file_row_number = true)"
        try:
            described = self.raw_sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
            cols = ", ".join(
                f"CAST({_ident(r[0])} AS VARCHAR) AS {_ident(r[0])}"
                for r in described
                if r[0] != "file_row_number"
            )
            self.raw_sql(
                f"CREATE OR REPLACE TEMP TABLE {_ident(name)} AS "
                f"SELECT CAST(file_row_number + 1 AS BIGINT) AS _row, {cols} FROM {source}"
            )
        except Exception as exc:  # duckdb.Error
            raise DataError(f"{path}: cannot be read as Parquet: {_first_line(exc)}") from None
        return self.con.table(name)

    @_writes
    def materialize_temp(self, name: str, expr: ir.Table) -> ir.Table:
        """Compute ``expr`` once into temp table ``name`` (replacing it) and return it."""
        self.con._run_pre_execute_hooks(expr)
        self.raw_sql(f"CREATE OR REPLACE TEMP TABLE {_ident(name)} AS {self.con.compile(expr)}")
        return self.con.table(name)

    @contextmanager
    def temporary(self, prefix: str, expr: ir.Table) -> Iterator[ir.Table]:
        """``expr`` computed once into a temp table (:meth:`materialize_temp`, a unique name
        starting with ``_<prefix>_``) for the ``with`` block, dropped after it: for results that
        several queries read, so the warehouse neither recomputes nor re-plans them."""
        name = f"_{prefix}_{uuid.uuid4().hex[:8]}"
        table = self.materialize_temp(name, expr)
        try:
            yield table
        finally:
            self.drop_temp(name)

    @_writes
    def drop_temp(self, name: str) -> None:
        """Drop temp table or view ``name`` if it exists (a staged view takes its ``_raw`` table along)."""
        found = self.con.con.execute(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_catalog = 'temp' AND table_name = ?",
            [name],
        ).fetchone()
        if found is None:
            return
        if found[0] == "VIEW":
            self.raw_sql(f"DROP VIEW temp.main.{_ident(name)}")
            self.raw_sql(f"DROP TABLE IF EXISTS temp.main.{_ident(name + '_raw')}")
        else:
            self.raw_sql(f"DROP TABLE temp.main.{_ident(name)}")

    def write_csv(self, expr: ir.Table, path: Path) -> None:
        """Write ``expr`` to a CSV file with a header (UTF-8, RFC 4180 quoting)."""
        self.con._run_pre_execute_hooks(expr)
        self.raw_sql(
            f"COPY ({self.con.compile(expr)}) TO '{_quote(str(path))}' (FORMAT csv, HEADER true)"
        )

    def _count(self, name: str) -> int:
        return int(self.raw_sql(f"SELECT count(*) FROM {_ident(name)}").fetchone()[0])

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows (as dicts) of one DuckDB statement written by our own code, values bound as parameters.

        For the point lookups of the segment-of-one view, where compiling Ibis expressions would
        cost far more than running them.  DuckDB only: callers keep an Ibis path for Spark."""
        if self.backend_name != "duckdb":
            raise WorkspaceError("fetch runs DuckDB SQL; use Ibis expressions on other backends")
        cursor = self.con.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @_writes
    def raw_sql(self, sql: str) -> Any:
        """Run SQL this package generated itself (never user text)."""
        return self.con.raw_sql(sql)


def _customer_index(table: str) -> str:
    return _ident(f"{table}_by_customer")


def open_warehouse(root: Path, settings: Settings) -> Warehouse:
    """The warehouse of ``settings.warehouse.backend``: this class for DuckDB, a Spark one for Spark."""
    if settings.warehouse.backend == "spark":
        from micromarketing.store.spark import SparkWarehouse

        return SparkWarehouse(root, settings)
    return Warehouse(root, settings)


def matching(table: ir.Table, match: dict[str, Any]) -> ir.BooleanValue:
    """Whether a row of ``table`` is one that ``match`` selects (see :meth:`Warehouse.replace_rows`);
    a NULL in a matched column does not match."""
    conds = [table[k].isin(list(v)) if _many(v) else table[k] == v for k, v in match.items()]
    return ibis.and_(*conds).fill_null(False) if conds else ibis.literal(True)


def _where(match: dict[str, Any]) -> tuple[str, list[Any]]:
    """``match`` as a SQL condition with ``?`` placeholders and their values (DuckDB's delete)."""
    conds, params = [], []
    for k, v in match.items():
        if not _many(v):
            conds.append(f"{_ident(k)} = ?")
            params.append(v)
        elif v:
            conds.append(f"{_ident(k)} IN ({', '.join('?' * len(v))})")
            params.extend(v)
        else:
            conds.append("FALSE")  # one of no values
    return " AND ".join(conds) or "TRUE", params


def _many(value: Any) -> bool:
    """A ``match`` value meaning "one of these" rather than "equal to this"."""
    return isinstance(value, (list, tuple, set, frozenset))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _quote(text: str) -> str:
    return text.replace("'", "''")
