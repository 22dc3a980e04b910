"""The warehouse on Apache Spark: session, catalog tables, file staging and key-based upserts.

:class:`SparkWarehouse` is the :class:`~micromarketing.store.warehouse.Warehouse` for
``[warehouse] backend = "spark"``; everything above the store builds the same Ibis expressions on
both engines.  What differs lives here:

* **Session.** ``spark_master`` is passed through as is; ``[warehouse.spark_conf]`` goes to the
  builder unchanged (after our defaults, so it wins).  The driver binds to 127.0.0.1 for
  ``local[N]`` and ``spark://127.*`` masters.  Spark's log4j output goes to
  ``<workspace>/logs/spark.log`` and the JVM's own stderr (its banner, JDK warnings) to
  ``logs/spark-jvm.log``, so the terminal shows only our messages and progress bars.
* **Catalog.** Tables live in the catalog database ``[warehouse] database`` (created when missing),
  stored as ``[warehouse] table_format`` (Parquet; Delta and Iceberg need jars from Maven, which
  :data:`TABLE_FORMATS` names as the seam).  ``[warehouse.tables]`` maps a logical table to an
  existing catalog table: it is checked for the columns and types it needs when the warehouse
  opens, then read where it lies through a temporary view of the logical name (read-only: ingest
  refuses to write into someone else's table, and its rollups are computed, not maintained).
* **Files.** Spark reads every file itself (CSV, JSON lines, Parquet; any path or URI it can
  read), so rows never pass through the driver.  Records are numbered in file order from the
  split each record came from (``_metadata.file_block_start``) and its position in the split.
* **Upserts.** Plain Parquet tables have no MERGE: a write computes ``stored rows whose key is
  not written ∪ written rows`` and replaces the table's rows by them with one ``INSERT
  OVERWRITE`` (into a table without data files, the first load, the rows are appended).  The
  rollups the write concerns are rebuilt from their sources the same way.  On a cluster every
  Spark job and Parquet commit costs scheduling time whatever the data's size, so each write
  is one job over rows computed once, not a staging table written, read back and dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
import uuid
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.csv as pacsv

from micromarketing.config import Settings
from micromarketing.errors import BackendUnsupportedError, ConfigError, DataError, EngineError
from micromarketing.store.rollups import ROLLUPS, Rollup, rebuilt_by, refreshed_by
from micromarketing.store.schema import SPARK_TYPES, TABLES, ColumnType, TableSpec, create_table_ddl
from micromarketing.store.warehouse import ROLLUP_DEFINITIONS, Warehouse, matching

LOG_DIR = "logs"
_session_log: Path | None = None  # the log file of this process's Spark session, once started
METASTORE = "metastore_db"  # the embedded Hive metastore (Derby) of a workspace without a shared one
# Storage formats a Spark warehouse can use: the one that needs no extra jars, and the two that
# would give MERGE and atomic commits once their runtime jars are on the cluster's classpath.
TABLE_FORMATS = {
    "parquet": None,
    "delta": "io.delta:delta-spark",
    "iceberg": "org.apache.iceberg:iceberg-spark-runtime",
}
# Spark types a mapped catalog column may have for each logical column type.
ACCEPTED_TYPES: dict[ColumnType, tuple[str, ...]] = {
    "string": ("string", "varchar", "char"),
    "int": ("bigint", "int", "smallint", "tinyint"),
    "float": ("double", "float", "decimal"),
    "bool": ("boolean",),
    "date": ("date",),
    "timestamp": ("timestamp", "timestamp_ntz"),
}
_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
logger.parquet.name = org.apache.parquet
logger.parquet.level = error
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = error
"""


class SparkWarehouse(Warehouse):
    """The warehouse on a Spark session: catalog tables, Spark-read files, rewrite-by-key upserts."""

    def __init__(self, root: Path, settings: Settings) -> None:
        super().__init__(root, settings)
        self._frames: dict[str, Any] = {}  # temp view name -> the cached DataFrame behind it
        self._mapped: dict[str, str] = dict(settings.warehouse.tables)
        unknown = sorted(set(self._mapped) - set(TABLES))
        if unknown:
            raise ConfigError(
                f"[warehouse.tables] {unknown[0]}: not a logical table (use one of: {', '.join(TABLES)})"
            )

    # -- connection -------------------------------------------------------------------------
    @property
    def con(self) -> Any:
        if self._con is None:
            con = self._connect()
            self._open_catalog(con._session)
            self._con = con
        return self._con

    @property
    def session(self) -> Any:
        """The SparkSession (for the few operations Ibis has no verb for)."""
        return self.con._session

    def _connect(self) -> Any:
        cfg = self.settings.warehouse
        if TABLE_FORMATS[cfg.table_format] is not None:
            raise BackendUnsupportedError(
                f"[warehouse] table_format = {cfg.table_format!r} needs {TABLE_FORMATS[cfg.table_format]} "
                "on the Spark classpath, which this version does not set up; use 'parquet'"
            )
        from pyspark.sql import SparkSession

        if _on_loopback(cfg.spark_master):  # Spark would pick the host's first non-loopback address
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (with its packages), unless told otherwise.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        logs = self.root / LOG_DIR
        logs.mkdir(parents=True, exist_ok=True)
        log4j = logs / "log4j2.properties"
        log4j.write_text(_LOG4J.format(log=(logs / "spark.log").resolve()), encoding="utf-8")
        conf = self._session_conf(log4j)
        builder = SparkSession.builder.master(cfg.spark_master).appName("micromarketing")
        for key, value in conf.items():
            builder = builder.config(key, value)
        with _stderr_to(logs / "spark-jvm.log"):  # the JVM inherits the log file as its stderr
            try:
                session = builder.getOrCreate()
            except Exception as exc:  # Py4J/JVM start-up errors: a bad master URL, no Java
                raise ConfigError(
                    f"[warehouse] spark_master {cfg.spark_master!r}: Spark did not start: "
                    f"{_first_line(exc)} (details in {logs / 'spark.log'})"
                ) from None
        session.sparkContext.setLogLevel("ERROR")
        global _session_log
        _session_log = logs / "spark.log"
        import ibis.backends.pyspark  # noqa: F401  (registers ibis.pyspark)

        con = ibis.pyspark.connect(session)
        _register_arrow_udfs(con)
        _list_tables_from_catalog(con)
        return con

    def _session_conf(self, log4j: Path) -> dict[str, str]:
        """Our session defaults, overlaid by ``[warehouse.spark_conf]`` (whose Java options are kept)."""
        cfg = self.settings.warehouse
        warehouse_dir = _location(self.root, cfg.spark_warehouse_dir)
        # derby.log goes beside Spark's log
        java = f"-Dlog4j2.configurationFile=file:{log4j.resolve()}"
        java += f" -Dderby.system.home={log4j.parent.resolve()}"
        if not cfg.spark_master.startswith("local"):
            # Off local mode the driver only plans and schedules, for one CLI command: the JIT's
            # optimising tier (C2) spent more CPU compiling than it saved there (about 40 of 95
            # CPU seconds on the cluster test).  Executors keep it; a later -XX option in
            # [warehouse.spark_conf] spark.driver.extraJavaOptions overrides this one.
            java += " -XX:TieredStopAtLevel=1"
        metastore = (self.root / METASTORE).resolve()
        conf = {
            "spark.sql.warehouse.dir": warehouse_dir,
            # A persistent catalog: Hive's, embedded (Derby, one process at a time) unless
            # [warehouse.spark_conf] names a shared metastore (spark.hadoop.hive.metastore.uris).
            "spark.sql.catalogImplementation": "hive",
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",  # noqa: E501
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not the legacy INT96
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            # executors import our UDFs' module: the same code as the driver's
            "spark.executorEnv.PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        if _on_loopback(cfg.spark_master):
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
        user = dict(cfg.spark_conf)
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            if key in user:
                user[key] = f"{java if 'driver' in key else ''} {user[key]}".strip()
        conf["spark.driver.extraJavaOptions"] = java
        conf.update(user)
        return conf

    def _open_catalog(self, session: Any) -> None:
        """Use (create) the catalog database, bring its tables' columns up to date, and check and
        expose the mapped tables under their logical names."""
        database = self.settings.warehouse.database
        if not session.catalog.databaseExists(database):  # asking first: no error in the metastore's log
            session.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
        session.catalog.setCurrentDatabase(database)
        self._add_new_columns(session)
        for logical, target in sorted(self._mapped.items()):
            self._map_table(session, TABLES[logical], target)

    def _map_table(self, session: Any, spec: TableSpec, target: str) -> None:
        """Temp view ``spec.name`` over catalog table ``target``, after checking its columns and types."""
        where = f"[warehouse.tables] {spec.name} = {target!r}"
        if not session.catalog.tableExists(target):
            raise ConfigError(f"{where}: no such table in the Spark catalog")
        fields = session.table(target).schema.fields
        types_by_name = {f.name.lower(): f.dataType.simpleString().lower() for f in fields}
        select = []
        for col in spec.columns + spec.derived:
            found = types_by_name.get(col.name)
            if found is None:
                if col.required or col.name in spec.key:
                    raise ConfigError(f"{where}: column {col.name!r} ({col.type}) is missing")
                select.append(f"CAST(NULL AS {SPARK_TYPES[col.type]}) AS {_ident(col.name)}")
                continue
            if not found.split("(")[0].startswith(ACCEPTED_TYPES[col.type]):
                raise ConfigError(
                    f"{where}: column {col.name!r} is {found}, expected {col.type} ({SPARK_TYPES[col.type]})"
                )
            select.append(f"CAST({_ident(col.name)} AS {SPARK_TYPES[col.type]}) AS {_ident(col.name)}")
        if spec.name == "transactions":  # the maintained flag, computed where the rows lie
            select.append("line_no = min(line_no) OVER (PARTITION BY order_id) AS order_head")
        view = f"CREATE OR REPLACE TEMP VIEW {_ident(spec.name)} AS SELECT {', '.join(select)} FROM {target}"
        session.sql(view)

    def close(self) -> None:
        """Drop this warehouse's temp views; the session stays up for the process (Spark starts slowly)."""
        for name in list(self._frames):
            self.drop_temp(name)
        if self._con is not None:
            for name in self._mapped:
                self.session.catalog.dropTempView(name)
        self._con = None

    def has_table(self, name: str) -> bool:
        return name in _table_names(self.session)

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the ingestible tables (Spark DDL, stored as Parquet) and their rollups if missing.

        (Tables made by an older version gained their new columns when the catalog was opened.)"""
        existing = set(self.con.list_tables())
        using = self.settings.warehouse.table_format
        created = set()
        for spec in TABLES.values():
            if spec.name not in self._mapped and spec.name not in existing:
                self.raw_sql(create_table_ddl(spec, "spark", using))
                created.add(spec.name)
        self._ensure_rollups(existing, empty=created)

    def _add_new_columns(self, session: Any) -> None:
        """A table made by an older version gains the columns added since, as NULLs (as on
        DuckDB): one ``ALTER TABLE … ADD COLUMNS`` each, catalog metadata only, no Spark job."""
        existing = set(_table_names(session))
        for spec in TABLES.values():
            if spec.name in self._mapped or spec.name not in existing:
                continue
            have = {f.name.lower() for f in session.table(spec.name).schema.fields}
            missing = [c for c in spec.columns + spec.derived + spec.maintained if c.name not in have]
            if missing:
                added = ", ".join(f"{_ident(c.name)} {SPARK_TYPES[c.type]}" for c in missing)
                session.sql(f"ALTER TABLE {_ident(spec.name)} ADD COLUMNS ({added})")
                session.catalog.refreshTable(spec.name)

    def _maintained(self, rollup: Rollup) -> bool:
        """Whether the warehouse keeps ``rollup`` as a table (not when it reads a mapped table)."""
        return not ({rollup.source, *rollup.inputs} & set(self._mapped))

    def _ensure_rollups(self, existing: set[str], empty: frozenset[str] | set[str] = frozenset()) -> None:
        """Build each maintained rollup that is missing or whose definition changed (as on DuckDB).

        A rollup whose sources are all in ``empty`` (tables just created) is created from its
        schema alone: computing an empty result still costs a Spark job per table.
        """
        if ROLLUP_DEFINITIONS not in existing:
            self.raw_sql(f"CREATE TABLE {ROLLUP_DEFINITIONS} (name STRING, sql_sha256 STRING) USING parquet")
        built = {r["name"]: r["sql_sha256"] for r in self.session.table(ROLLUP_DEFINITIONS).collect()}
        changed = False
        for rollup in ROLLUPS.values():
            if not self._maintained(rollup):
                continue
            expr = self._build(rollup, self.con.table(rollup.source))
            digest = hashlib.sha256(str(self.con.compile(expr)).encode()).hexdigest()
            if rollup.name in existing and built.get(rollup.name) == digest:
                continue
            if rollup.name not in existing and {rollup.source, *rollup.inputs} <= empty:
                fmt = self.settings.warehouse.table_format
                self.con.create_table(rollup.name, schema=expr.schema(), format=fmt)
            else:
                self._rewrite(rollup.name, expr)
            built[rollup.name] = digest
            changed = True
        if changed:  # names and hex digests: literals needing no escaping
            rows = ", ".join(f"('{name}', '{digest}')" for name, digest in built.items())
            self.raw_sql(f"INSERT OVERWRITE TABLE {ROLLUP_DEFINITIONS} VALUES {rows}")

    def rollup(self, name: str, before: datetime | None = None) -> ir.Table:
        rollup = ROLLUPS[name]
        if self._maintained(rollup):
            return super().rollup(name, before)
        source = self.table(rollup.source)
        if before is not None and rollup.time is not None:
            source = source.filter(source[rollup.time] < before)
        return self._build(rollup, source)

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, name: str, rows: ir.Table) -> int:
        """Insert ``rows`` into table ``name``, replacing stored rows with the same key; returns the count.

        The table is rewritten as (stored rows whose key is not written) ∪ (written rows), so a
        re-run leaves it unchanged; ``order_head`` is recomputed over the result, and the
        rollups the table feeds are rebuilt from their sources.  Not atomic across tables on
        plain Parquet (see :meth:`_rewrite`).
        """
        spec = TABLES[name]
        if name in self._mapped:
            raise BackendUnsupportedError(
                f"{name} is mapped to the catalog table {self._mapped[name]!r} ([warehouse.tables]); "
                "micromarketing reads it where it lies and does not write into it"
            )
        target = self.con.table(name)
        written = self.materialize_temp(f"_upsert_{uuid.uuid4().hex[:8]}", rows.select(*rows.columns))
        try:
            fresh = written.mutate(**{c.name: ibis.null(_IBIS[c.type]) for c in spec.maintained})
            fresh = fresh.select(*target.columns).cast(target.schema())
            stored = self._holds_files(name)
            merged = target.anti_join(written, list(spec.key)).union(fresh) if stored else fresh
            if name == "transactions":
                merged = merged.mutate(
                    order_head=merged.line_no == merged.line_no.min().over(group_by=merged.order_id)
                )
            count = int(written.count().to_pyarrow().as_py())
            if stored:
                self._rewrite(name, merged.select(*target.columns))
            else:  # the first load: nothing stored to keep, the rows are appended
                self._write(name, merged.select(*target.columns), overwrite=False)
        finally:
            self.drop_temp(written.get_name())
        for rollup in (*refreshed_by(name), *rebuilt_by(name)):
            if self._maintained(rollup):
                self._rewrite(rollup.name, self._build(rollup, self.con.table(rollup.source)))
        return count

    def _rewrite(self, name: str, expr: ir.Table) -> ir.Table:
        """Replace the rows of table ``name`` by ``expr``'s (which may read ``name`` itself).

        One ``INSERT OVERWRITE`` (a Spark job and a Parquet commit), which keeps the table's
        definition and location (a catalog table stays where it is); a missing table is created
        from ``expr``'s schema.  Plain Parquet has no transactions: a write that fails midway
        leaves the table short, as any Parquet overwrite does (Delta/Iceberg would not).
        """
        if not self.has_table(name):
            return self.con.create_table(name, expr, format=self.settings.warehouse.table_format)
        self._write(name, expr.select(*self.con.table(name).columns), overwrite=True)
        return self.con.table(name)

    def _write(self, name: str, expr: ir.Table, *, overwrite: bool) -> None:
        """Append ``expr``'s rows (columns in the table's order) to table ``name``, or overwrite it with them.

        Spark refuses to overwrite a path the query reads, so rows that read ``name`` itself
        are computed first into the executors' storage (a local checkpoint) and written from
        there: one job more, instead of a staging table's write, read and drop.
        """
        frame = self._dataframe(expr)
        if overwrite and _reads(expr, name):
            frame = frame.localCheckpoint(eager=True)
        frame.write.insertInto(name, overwrite=overwrite)
        self.session.catalog.refreshTable(name)

    def _holds_files(self, name: str) -> bool:
        """Whether table ``name`` has any data file (listed by the driver: no Spark job)."""
        return bool(self.session.table(name).inputFiles())

    def replace_table(self, name: str, expr: ir.Table) -> ir.Table:
        """Materialise ``expr`` as table ``name`` (replacing it and its schema) and return it."""
        frame = self._dataframe(expr)
        if _reads(expr, name):  # as in _write: Spark cannot replace a table the query reads
            frame = frame.localCheckpoint(eager=True)
        frame.write.saveAsTable(name, format=self.settings.warehouse.table_format, mode="overwrite")
        return self.con.table(name)

    def create_from(self, name: str, data: Any) -> ir.Table:
        return self.replace_table(name, ibis.memtable(data))

    def replace_rows(self, name: str, rows: ir.Table, match: dict[str, Any]) -> int:
        """Replace the rows of ``name`` that ``match`` selects by ``rows``; returns the count.

        As :meth:`Warehouse.replace_rows` (a list value means "one of"); every call rewrites the
        whole table, so a caller replacing several groups of rows passes them in one call."""
        if not self.has_table(name):
            self.con.create_table(name, schema=rows.schema(), format=self.settings.warehouse.table_format)
        table = self.con.table(name)
        rows = rows.select(*table.columns).cast(table.schema())
        written = self.materialize_temp(f"_rows_{uuid.uuid4().hex[:8]}", rows)
        try:
            fresh = written.cast(table.schema())  # Spark widens small ints
            if not self._holds_files(name):
                self._write(name, fresh.select(*table.columns), overwrite=False)
            else:
                self._rewrite(name, table.filter(~matching(table, match)).union(fresh))
            return int(written.count().to_pyarrow().as_py())
        finally:
            self.drop_temp(written.get_name())

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
        """Spark reads the delimited file into temp view ``name`` (text columns + ``_row``).

        As on DuckDB, returns ``(rows, rejects)``; a record with too few or too many fields is a
        reject (``MISSING COLUMNS`` / ``TOO MANY COLUMNS``) with its raw text.  Records are
        read line by line (Spark's splittable mode), so a quoted field cannot span lines here.
        """
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        schema = T.StructType(
            [T.StructField(c, T.StringType()) for c in columns] + [T.StructField("_corrupt", T.StringType())]
        )
        try:
            frame = self.session.read.csv(
                _uri(path), schema=schema, header=header, sep=delim, quote=quote or "\u0000",
                escape=quote or "\\", mode="PERMISSIVE", columnNameOfCorruptRecord="_corrupt",
                enforceSchema=True, multiLine=False,
            )
            numbered = self._numbered(frame)
        except Exception as exc:  # AnalysisException (path), Py4JJavaError (unreadable)
            raise DataError(f"{path}: cannot be read: {_first_line(exc)}") from None
        fields = F.size(F.split(F.col("_corrupt"), _regex_quote(delim), -1))
        bad = F.col("_corrupt").isNotNull()
        accepted = numbered.filter(~bad).select("_row", *columns)
        rejects = numbered.filter(bad).select(
            "_row",
            F.lit("").alias("_field"),
            F.when(fields < len(columns), "MISSING COLUMNS").otherwise("TOO MANY COLUMNS").alias("_error"),
            F.concat(F.lit(f"expected {len(columns)} fields, found "), fields.cast("string"))
            .alias("_reason"),
            F.col("_corrupt").alias("_raw"),
        )
        return self._temp(name, accepted), self._temp(name + "_rejects", rejects)

    def stage_jsonl(self, path: Path, name: str) -> tuple[ir.Table, ir.Table]:
        """Spark reads the JSON lines into temp view ``name``: ``_row`` and one text column per key.

        The same rules as on DuckDB: blank lines skipped, lines that are not a JSON object
        rejected (``INVALID JSON`` / ``NOT AN OBJECT``), keys differing only by case share a
        column and a line holding two of them is rejected (``DUPLICATE KEY``).
        """
        from pyspark.sql import functions as F

        try:
            lines = self._numbered(self.session.read.text(_uri(path)).withColumnRenamed("value", "_line"))
        except Exception as exc:
            raise DataError(f"{path}: cannot be read: {_first_line(exc)}") from None
        lines = lines.filter(F.trim(F.col("_line")) != "")
        parsed = lines.select(
            "_row", "_line",
            F.expr("try_parse_json(_line) IS NOT NULL").alias("_valid"),
            F.expr("from_json(_line, 'map<string,string>')").alias("_map"),
        )
        parsed = self._frame(self._temp(name + "_lines", parsed))
        ok = F.col("_valid") & F.col("_map").isNotNull()
        keys = sorted(
            r[0] for r in parsed.filter(ok).select(F.explode(F.map_keys("_map"))).distinct().collect()
        )
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(k.strip().lower(), []).append(k)

        def has(k: str) -> Any:
            return F.array_contains(F.map_keys("_map"), F.lit(k)).cast("int")

        clashes = [(low, ks) for low, ks in groups.items() if len(ks) > 1]
        clash_of = {low: sum((has(k) for k in ks[1:]), has(ks[0])) > 1 for low, ks in clashes}
        any_clash = F.lit(False)
        for cond in clash_of.values():
            any_clash = any_clash | cond
        columns = [
            F.coalesce(*[F.col("_map").getItem(k) for k in ks]).alias(ks[0]) for ks in groups.values()
        ]
        accepted = parsed.filter(ok & ~any_clash).select("_row", *columns)
        field = F.lit(None).cast("string")
        why = F.lit(None).cast("string")
        for low, ks in reversed(clashes):
            field = F.when(clash_of[low], F.lit(low)).otherwise(field)
            why = F.when(clash_of[low], F.lit("the line holds " + " and ".join(ks))).otherwise(why)
        broken = parsed.filter(~ok).select(
            "_row", F.lit("").alias("_field"),
            F.when(F.col("_valid"), "NOT AN OBJECT").otherwise("INVALID JSON").alias("_error"),
            F.when(F.col("_valid"), "the line is JSON but not an object")
            .otherwise("the line is not valid JSON").alias("_reason"),
            F.col("_line").alias("_raw"),
        )
        duplicated = parsed.filter(ok & any_clash).select(
            "_row", field.alias("_field"), F.lit("DUPLICATE KEY").alias("_error"), why.alias("_reason"),
            F.col("_line").alias("_raw"),
        )
        rows = self._temp(name, accepted)
        rejects = self._temp(name + "_rejects", broken.unionByName(duplicated))
        self.drop_temp(name + "_lines")
        return rows, rejects

    def stage_parquet(self, path: Path, name: str) -> ir.Table:
        """Spark reads the Parquet file into temp view ``name``: ``_row`` (1-based), columns as text."""
        from pyspark.sql import functions as F

        try:
            frame = self.session.read.parquet(_uri(path))
            columns = [F.col(f"`{c}`").cast("string").alias(c) for c in frame.columns]
            numbered = frame.select((F.col("_metadata.row_index") + 1).alias("_row"), *columns)
        except Exception as exc:
            raise DataError(f"{path}: cannot be read as Parquet: {_first_line(exc)}") from None
        return self._temp(name, numbered)

    def _numbered(self, frame: Any) -> Any:
        """``frame`` with ``_row``: each record's 1-based position in the file, computed on the executors.

        A record's position is the records of the splits before its own (a count per split,
        collected: one row per split) plus its place in its split; the ids are fixed by a local
        checkpoint so that the numbering is computed once.
        """
        from pyspark.sql import functions as F

        block = F.col("_metadata.file_block_start").alias("_blk")
        ids = F.monotonically_increasing_id().alias("_mid")
        tagged = frame.select("*", block, ids).localCheckpoint(eager=True)
        splits = tagged.groupBy("_blk").agg(F.min("_mid").alias("_first"), F.count("*").alias("_n"))
        before, offsets = 0, []
        for blk, first, n in sorted((r["_blk"], r["_first"], r["_n"]) for r in splits.collect()):
            offsets.append((blk, first, before))
            before += n
        if not offsets:
            return tagged.drop("_blk", "_mid").withColumn("_row", F.lit(None).cast("bigint"))
        table = self.session.createDataFrame(offsets, "_blk bigint, _first bigint, _before bigint")
        joined = tagged.join(F.broadcast(table), "_blk")
        row = (F.col("_before") + F.col("_mid") - F.col("_first") + 1).cast("bigint")
        return joined.withColumn("_row", row).drop("_blk", "_mid", "_first", "_before")

    def materialize_temp(self, name: str, expr: ir.Table) -> ir.Table:
        """Compute ``expr`` once (a cached DataFrame) as temp view ``name``."""
        return self._temp(name, self._dataframe(expr))

    def _dataframe(self, expr: ir.Table) -> Any:
        """The Spark DataFrame of ``expr`` (its in-memory tables and UDFs registered first)."""
        self.con._run_pre_execute_hooks(expr)
        return self.session.sql(str(self.con.compile(expr)))

    def _temp(self, name: str, frame: Any) -> ir.Table:
        """Temp view ``name`` over ``frame``, cached on the executors when first computed."""
        self.drop_temp(name)
        frame = frame.cache()
        frame.createOrReplaceTempView(name)
        self._frames[name] = frame
        return self.con.table(name)

    def _frame(self, table: ir.Table) -> Any:
        return self._frames[table.get_name()]

    def drop_temp(self, name: str) -> None:
        frame = self._frames.pop(name, None)
        if frame is not None:
            frame.unpersist()
        if self._con is not None and name not in self._mapped:
            self.session.catalog.dropTempView(name)

    def write_csv(self, expr: ir.Table, path: Path) -> None:
        """Write ``expr`` (quarantined rows: small) to one local CSV file with a header, via the driver."""
        data = expr.to_pyarrow()
        path.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(data, path)

    def _count(self, name: str) -> int:
        return int(self.con.table(name).count().to_pyarrow().as_py())

    def raw_sql(self, sql: str) -> Any:
        """Run Spark SQL this package generated itself (never user text); returns the DataFrame."""
        return self.con.raw_sql(sql)


_IBIS: dict[ColumnType, dt.DataType] = {
    "string": dt.string, "int": dt.int64, "float": dt.float64, "bool": dt.boolean, "date": dt.date,
    "timestamp": dt.Timestamp(timezone="UTC"),
}


def engine_error(exc: BaseException) -> EngineError | None:
    """``exc`` as a one-line :class:`EngineError` when it is a Spark or Py4J failure, else None.

    Spark reports a failed job as a Python exception that carries the JVM's stack trace; a user
    needs its first line and where the rest is logged.  Without a Spark session nothing is a
    Spark failure (and pyspark is not imported for the asking).
    """
    if "pyspark" not in sys.modules:
        return None
    from py4j.protocol import Py4JError, Py4JJavaError
    from pyspark.errors import PySparkException

    if not isinstance(exc, PySparkException | Py4JError):
        return None
    text = _first_line(exc)
    if isinstance(exc, Py4JJavaError):  # "An error occurred while calling o42.sql.\n: java.…: why"
        causes = [line[2:].strip() for line in str(exc).splitlines() if line.startswith(": ")]
        text = causes[0] if causes else text
    where = f" (details in {_session_log})" if _session_log is not None else ""
    return EngineError(f"Spark failed: {text}{where}")


def _register_arrow_udfs(con: Any) -> None:
    """Make Ibis' pyarrow UDFs batch-wise on Spark too.

    Ibis 12 registers a pyarrow UDF as ``udf(useArrow=True)``, which Spark still calls once per
    row with Python scalars; Spark 4.1's ``arrow_udf`` hands it Arrow arrays, as DuckDB does.
    """
    import ibis.expr.operations as ops
    from ibis.backends.pyspark.datatypes import PySparkType
    from ibis.expr.operations.udf import InputType
    from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

    original = con._register_udfs

    def register(self: Any, expr: ir.Expr) -> None:
        original(expr)
        for udf in expr.op().find(ops.ScalarUDF):
            if udf.__input_type__ != InputType.PYARROW:
                continue
            func = udf.__func__

            def batch(*arrays: pa.Array, _func: Any = func) -> pa.Array:
                return _func(*arrays)

            with warnings.catch_warnings():  # "prefer type hints": the ibis hints are not Arrow's
                warnings.simplefilter("ignore", UserWarning)
                spark_udf = arrow_udf(batch, PySparkType.from_ibis(udf.dtype), ArrowUDFType.SCALAR)
            self._session.udf.register(self.compiler.__sql_name__(udf), spark_udf)

    con._register_udfs = types.MethodType(register, con)


def _reads(expr: ir.Table, name: str) -> bool:
    """Whether ``expr`` reads catalog table (or view) ``name``."""
    import ibis.expr.operations as ops

    return any(table.name == name for table in expr.op().find(ops.DatabaseTable))


def _list_tables_from_catalog(con: Any) -> None:
    """``con.list_tables()`` of the current database (temp views included): one ``SHOW TABLES``.

    Ibis asks Spark for ``CURRENT_DATABASE()`` first (two queries on every call; the segment
    compiler calls it per rule).  ``catalog.listTables()`` is worse: it fetches every table's
    metadata from the metastore, 0.7–1.5 s for ten tables against 0.1–0.3 s for ``SHOW TABLES``,
    which reads the names alone.
    """
    base = con.list_tables

    def list_tables(self: Any, *, like: str | None = None, database: str | None = None) -> list[str]:
        if database is not None:
            return base(like=like, database=database)
        return self._filter_with_like(_table_names(self._session), like)

    con.list_tables = types.MethodType(list_tables, con)


def _table_names(session: Any) -> list[str]:
    """The current database's tables and the session's temp views, by name (no metadata read)."""
    return [row.tableName for row in session.sql("SHOW TABLES").collect()]


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` meanwhile: a child process started now keeps it as stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _on_loopback(master: str) -> bool:
    return master.startswith("local") or master.startswith("spark://127.") or master.startswith("spark://localhost")


def _location(root: Path, where: str) -> str:
    """A directory setting as Spark needs it: a URI as is, a path relative to the workspace made absolute."""
    if "://" in where:
        return where
    return str((root / where).resolve())


def _uri(path: Path | str) -> str:
    """A file argument for Spark's readers: a URI as is, a local path absolute (read by the executors)."""
    text = str(path)
    return text if "://" in text else str(Path(text).resolve())


def _regex_quote(delim: str) -> str:
    import re

    return re.escape(delim)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("JVM stacktrace", "\tat ")):
            return line.strip()
    return type(exc).__name__


