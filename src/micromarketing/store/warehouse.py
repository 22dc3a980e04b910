"""The analytical store: Ibis over DuckDB (embedded default) or Apache Spark.

Everything above this module builds Ibis expressions; this module owns the connection, the DDL
derived from :mod:`micromarketing.store.schema`, and the few operations Ibis has no portable verb
for (composite-key upserts).  DuckDB allows one read-write process per file, so the connection is
opened lazily and closed with the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from micromarketing.config import Settings
from micromarketing.errors import DataError, WorkspaceError
from micromarketing.store.schema import SQL_TYPES, TABLES, TableSpec


class Warehouse:
    """Lazily connected Ibis backend plus the table operations the domain packages need."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self._con: Any = None

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
        return self._con

    def _connect(self) -> Any:
        cfg = self.settings.warehouse
        if cfg.backend == "duckdb":
            con = ibis.duckdb.connect(str(self.path))
            con.raw_sql("SET TimeZone = 'UTC'")
            if cfg.threads:
                con.raw_sql(f"SET threads = {int(cfg.threads)}")
            if cfg.memory_limit:
                con.raw_sql(f"SET memory_limit = '{_quote(cfg.memory_limit)}'")
            return con
        if cfg.backend == "spark":
            from pyspark.sql import SparkSession

            warehouse_dir = (self.root / cfg.spark_warehouse_dir).resolve()
            session = (
                SparkSession.builder.master(cfg.spark_master)
                .appName("micromarketing")
                .config("spark.sql.warehouse.dir", str(warehouse_dir))
                .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse_dir}")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "4")
                .getOrCreate()
            )
            return ibis.pyspark.connect(session)
        raise WorkspaceError(f"unknown warehouse backend {cfg.backend!r}")

    def close(self) -> None:
        if self._con is not None and self.backend_name == "duckdb":
            self._con.disconnect()
        self._con = None

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the ingestible tables if they do not exist (keys become primary keys)."""
        for spec in TABLES.values():
            if not self.has_table(spec.name):
                self.con.raw_sql(_create_table_ddl(spec))

    def has_table(self, name: str) -> bool:
        return name in self.con.list_tables()

    def table(self, name: str) -> ir.Table:
        """The named table as an Ibis expression."""
        if not self.has_table(name):
            raise DataError(f"table {name!r} does not exist yet (ingest data or run `profile` first)")
        return self.con.table(name)

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, name: str, rows: ir.Table) -> int:
        """Insert ``rows`` into table ``name``, replacing rows with the same key; returns the count.

        The table's primary key (from the schema) decides what "the same row" means, so
        re-ingesting a file leaves the table unchanged.
        """
        spec = TABLES[name]
        columns = [c for c in rows.columns]
        if self.backend_name != "duckdb":
            raise WorkspaceError("ingest writes go to the embedded DuckDB warehouse")
        rows = rows.select(*columns)
        # Compiling by hand skips Ibis' registration of in-memory tables; do it explicitly.
        self.con._run_pre_execute_hooks(rows)
        select_sql = self.con.compile(rows)
        cols = ", ".join(_ident(c) for c in columns)
        self.con.raw_sql(f"INSERT OR REPLACE INTO {_ident(spec.name)} ({cols}) {select_sql}")
        return int(rows.count().execute())

    def replace_table(self, name: str, expr: ir.Table) -> ir.Table:
        """Materialise ``expr`` as table ``name`` (replacing it) and return the new table."""
        return self.con.create_table(name, expr, overwrite=True)

    def create_from(self, name: str, data: Any) -> ir.Table:
        """Materialise an in-memory dataframe/arrow table as ``name`` (replacing it)."""
        return self.con.create_table(name, data, overwrite=True)

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

    def replace_rows(self, name: str, rows: ir.Table, match: dict[str, Any]) -> int:
        """Replace the rows of table ``name`` whose columns equal ``match`` by ``rows``; returns the count.

        Creates the table (with ``rows``' schema) when it does not exist.  On DuckDB the delete
        uses bound parameters and runs in one transaction with the insert; other backends rewrite
        the table through Arrow.
        """
        if not self.has_table(name):
            self.con.create_table(name, schema=rows.schema())
        columns = list(self.con.table(name).columns)
        rows = rows.select(*columns)
        if self.backend_name == "duckdb":
            self.con._run_pre_execute_hooks(rows)
            select_sql = self.con.compile(rows)
            where = " AND ".join(f"{_ident(k)} = ?" for k in match) or "TRUE"
            raw = self.con.con
            raw.execute("BEGIN TRANSACTION")
            try:
                raw.execute(f"DELETE FROM {_ident(name)} WHERE {where}", list(match.values()))
                raw.execute(f"INSERT INTO {_ident(name)} {select_sql}")
                raw.execute("COMMIT")
            except Exception:
                raw.execute("ROLLBACK")
                raise
            return int(self.con.table(name).filter(
                [self.con.table(name)[k] == v for k, v in match.items()]).count().execute())
        table = self.con.table(name)
        keep = table
        if match:
            same = ibis.and_(*[table[k] == v for k, v in match.items()])
            keep = table.filter(~same)
        data = keep.union(rows).to_pyarrow()
        self.con.create_table(name, data, overwrite=True)
        return int(rows.count().execute())

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

    def raw_sql(self, sql: str) -> Any:
        """Run SQL this package generated itself (never user text)."""
        return self.con.raw_sql(sql)


def _create_table_ddl(spec: TableSpec) -> str:
    cols = [f"{_ident(c.name)} {SQL_TYPES[c.type]}" for c in spec.columns + spec.derived]
    key = ", ".join(_ident(k) for k in spec.key)
    return f"CREATE TABLE {_ident(spec.name)} ({', '.join(cols)}, PRIMARY KEY ({key}))"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return text.replace("'", "''")
