"""Scale-out parity: the same queries on DuckDB and on Apache Spark (local mode) give the same rows.

This is the project's only Spark test module (Spark takes ~10 s to start): one module-scoped
SparkSession whose warehouse directory and Derby home live in a temp dir.  Helpers for other
parity tests:

* :func:`spark_workspace` — a Spark-backed Workspace sharing a DuckDB workspace's operations store,
  with the DuckDB tables copied into Spark;
* :func:`rows` — an Ibis table's rows as a sorted list of tuples, for comparing engines.

To add a profile-query parity test, build the query with the same function against
``duck_ws`` and ``spark_ws`` and ``assert rows(a) == rows(b)``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import ibis.expr.operations as ops
import pytest

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        shutil.which("java") is None, reason="Spark needs Java (apt-get install openjdk-17-jre-headless)"
    ),
]

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed")

from micromarketing.segments import Segments  # noqa: E402
from micromarketing.workspace import Workspace  # noqa: E402


def _load_population() -> Any:
    name = "mm_segments_population"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "segments" / "population.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


population = _load_population()


@pytest.fixture(scope="module")
def spark_session(tmp_path_factory):
    """One local SparkSession for the module; nothing is written into the current directory."""
    from pyspark.sql import SparkSession

    home = tmp_path_factory.mktemp("spark")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers need our packages (pyarrow, h3)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("micromarketing-tests")
        .config("spark.sql.warehouse.dir", str(home / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={home}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield session
    session.stop()


def spark_workspace(duck_ws: Workspace, tables: list[str] | None = None) -> Workspace:
    """A Spark-backed Workspace on the same directory (same ops store) holding copies of the tables."""
    settings = duck_ws.settings.model_copy(deep=True)
    settings.warehouse.backend = "spark"
    spark_ws = Workspace(duck_ws.root, settings)
    spark_ws.warehouse.load_tables_from(
        duck_ws.warehouse,
        tables
        or [
            "customers",
            "profiles",
            "stores",
            "transactions",
            "events",
            "products",
            "segment_members",
            "customer_orders",
            "customer_engagement",
        ],
    )
    return spark_ws


def rows(table: Any) -> list[tuple]:
    """Rows of an Ibis table as sorted tuples (floats rounded to 9 digits, NaN as None)."""
    out = []
    for row in table.to_pyarrow().to_pylist():
        vals = []
        for v in row.values():
            if isinstance(v, float):
                v = None if math.isnan(v) else round(v, 9)
            vals.append(v)
        out.append(tuple(vals))
    return sorted(out, key=repr)


@pytest.fixture(scope="module")
def engines(spark_session, tmp_path_factory):
    """(DuckDB workspace, Spark workspace) over the same population and stored segments."""
    duck_ws = population.build_population(tmp_path_factory.mktemp("parity") / "ws")
    seg = Segments(duck_ws)
    seg.create("paris", "city = 'Paris'")
    seg.create("runners", "interests contains 'running'")
    seg.save_discovered("cluster_1", ["C01", "C05", "C09"], as_of=population.AS_OF)
    spark_ws = spark_workspace(duck_ws)
    # Warehouse._connect asks for 4 shuffle partitions; one is faster for test-sized data.
    spark_session.conf.set("spark.sql.shuffle.partitions", "1")
    yield duck_ws, spark_ws
    spark_ws.warehouse.close()
    duck_ws.close()


EXTRA_RULES = [
    ("in_segment('paris') and not in_segment('runners')", {"C02", "C07"}),
    ("in_segment('cluster_1') or rfm_segment = 'lost'", {"C01", "C05", "C07", "C09"}),
    ("distance_km(store('S001')) < 20 and last_order_at < as_of() - 5", {"C02", "C06", "C07"}),
    # C01: 1500 / 0 is null (no ANSI error on Spark); C11: 0 / -12 is -0.0, not < 0
    ("monetary / (frequency - 12) < 0", {"C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10"}),
]


def member_sets(segments: Segments, rules: list[str]) -> dict[str, set[str]]:
    """Members of every rule (one query per rule: Spark plans one big UNION much more slowly)."""
    return {rule: {r[0] for r in rows(segments.compile(rule).members())} for rule in rules}


def test_rule_segments_select_identical_members_on_duckdb_and_spark(engines):
    duck_ws, spark_ws = engines
    assert spark_ws.warehouse.backend_name == "spark"
    cases = population.RULE_CASES + EXTRA_RULES
    rules = [rule for rule, _ in cases]
    on_duck = member_sets(Segments(duck_ws), rules)
    on_spark = member_sets(Segments(spark_ws), rules)
    for rule, expected in cases:
        assert on_duck[rule] == expected, rule
        assert on_spark[rule] == on_duck[rule], rule


def test_spark_runs_the_sql_shown_for_the_spark_dialect(engines, spark_session):
    duck_ws, spark_ws = engines
    rule = "bought(category='running', within_days=90) and age < 40"
    offline = Segments(duck_ws).sql(rule=rule, dialect="spark")
    native = Segments(spark_ws).sql(rule=rule, dialect="spark")
    assert offline == native
    got = {r[0] for r in spark_session.sql(offline).collect()}
    assert got == {"C01", "C03", "C10"}


def test_materialise_on_spark(engines):
    _, spark_ws = engines
    result = Segments(spark_ws).materialise("paris")
    assert result.size == 3
    assert {r[0] for r in rows(Segments(spark_ws).member_table("cluster_1"))} == {"C01", "C05", "C09"}


@pytest.fixture(scope="module")
def generated_engines(spark_session, tmp_path_factory):
    """(DuckDB workspace, Spark workspace) over a small generated and ingested data set."""
    from micromarketing.datasets import generate

    base = tmp_path_factory.mktemp("generated")
    data = generate(base / "data", customers=300, seed=3).paths
    duck_ws = Workspace.init(base / "ws")
    for kind in ("stores", "customers", "transactions", "events"):
        duck_ws.ingest(kind, data[kind])
    spark_ws = spark_workspace(
        duck_ws,
        ["customers", "stores", "transactions", "events", "customer_orders", "customer_engagement"],
    )
    spark_session.conf.set("spark.sql.shuffle.partitions", "1")
    yield duck_ws, spark_ws
    spark_ws.warehouse.close()
    duck_ws.close()


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


@pytest.mark.parametrize(
    "as_of",
    [date(2026, 3, 1), date(2030, 1, 1)],
    ids=["rollups-from-raw-rows", "maintained-rollups"],
)
def test_profile_query_gives_identical_rows_on_duckdb_and_spark(generated_engines, as_of):
    from micromarketing.profiles.build import profile_expr

    def profile_rows(ws: Workspace) -> list[tuple]:
        customers = ws.table("customers")
        cutoff = datetime.combine(as_of, time(), tzinfo=UTC)
        orders = ws.warehouse.rollup("customer_orders", before=cutoff)
        engagement = ws.warehouse.rollup("customer_engagement", before=cutoff)
        stored = as_of.year == 2030  # after every generated row: the maintained tables answer
        assert isinstance(orders.op(), ops.DatabaseTable) is stored
        assert isinstance(engagement.op(), ops.DatabaseTable) is stored
        expr = profile_expr(
            customers=customers,
            orders=orders,
            engagement=engagement,
            geo=ws.warehouse.rollup("customer_geo"),  # computed on Spark: no copy was loaded
            as_of=as_of,
        )
        # DuckDB returns UTC-aware timestamps, Spark naive ones in its UTC session zone.
        return [tuple(_naive_utc(v) for v in row) for row in rows(expr)]

    duck_ws, spark_ws = generated_engines
    on_duck = profile_rows(duck_ws)
    assert len(on_duck) == 300
    assert {row[13] for row in on_duck} >= {"champions", "lost"}  # rfm_segment is really computed
    assert profile_rows(spark_ws) == on_duck


# -- ingest, profile and CLV through the Spark warehouse itself (no copying) ---------------------
KINDS = {
    "products": "products", "stores": "stores", "customers": "customers",
    "transactions": "transactions", "events": "events", "consent": "consent",
}
BAD_TRANSACTIONS = (
    "order_id,line_no,customer_id,ordered_at,amount,currency\n"
    "X1,1,C0000001,2026-01-05T10:00:00Z,12.50,EUR\n"
    "X2,1,C0000002,not-a-date,3.00,EUR\n"
    "X3,1,C0000003,2026-01-06,-4,EUR\n"
    "X4,1,C0000004,2026-01-07\n"
    "X1,1,C0000001,2026-01-05T11:00:00+01:00,13.50,eur\n"
    "X5,1,,2026-01-08,1.5,EUR\n"
)


def _spark_settings(duck_ws: Workspace, database: str) -> Any:
    settings = duck_ws.settings.model_copy(deep=True)
    settings.warehouse.backend = "spark"
    settings.warehouse.database = database
    return settings


@pytest.fixture(scope="module")
def ingested(spark_session, tmp_path_factory):
    """(DuckDB workspace, Spark workspace, results per kind) after ingesting the same files into each."""
    from micromarketing.config import write_default_settings
    from micromarketing.datasets import generate

    base = tmp_path_factory.mktemp("ingested")
    data = generate(base / "data", customers=150, seed=11).paths
    duck_ws = Workspace.init(base / "duck")
    root = base / "spark"
    root.mkdir()
    write_default_settings(root)
    spark_ws = Workspace(root, _spark_settings(duck_ws, "ingested"))
    spark_ws.warehouse.ensure_schema()
    spark_ws.ops.create_all()
    spark_session.conf.set("spark.sql.shuffle.partitions", "2")
    results = {}
    for kind in KINDS:
        results[kind] = (duck_ws.ingest(kind, data[kind]), spark_ws.ingest(kind, data[kind]))
    yield duck_ws, spark_ws, results, data
    spark_ws.warehouse.close()
    duck_ws.close()


def _table_rows(ws: Workspace, name: str) -> list[tuple]:
    return [tuple(_naive_utc(v) for v in row) for row in rows(ws.table(name))]


def test_spark_ingest_accepts_and_stores_what_duckdb_does(ingested):
    duck_ws, spark_ws, results, _ = ingested
    for kind, (on_duck, on_spark) in results.items():
        assert (on_spark.rows_read, on_spark.accepted, on_spark.rejected) == (
            on_duck.rows_read, on_duck.accepted, on_duck.rejected), kind
        assert on_spark.reasons == on_duck.reasons, kind
    for name in (*KINDS, "customer_orders", "customer_engagement", "customer_geo"):
        assert _table_rows(spark_ws, name) == _table_rows(duck_ws, name), name


def test_spark_reingest_changes_nothing_and_quarantines_like_duckdb(ingested, tmp_path):
    duck_ws, spark_ws, _, data = ingested
    before = _table_rows(spark_ws, "transactions")
    again = spark_ws.ingest("transactions", data["transactions"])
    assert again.rejected == 0 and _table_rows(spark_ws, "transactions") == before
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_TRANSACTIONS, encoding="utf-8")
    on_duck, on_spark = duck_ws.ingest("transactions", bad), spark_ws.ingest("transactions", bad)
    assert (on_spark.accepted, on_spark.rejected) == (on_duck.accepted, on_duck.rejected) == (1, 5)
    assert on_spark.reasons == on_duck.reasons
    quarantined = [
        {(r["row"], r["field"]) for r in csv.DictReader(result.quarantine_path.open(encoding="utf-8"))}
        for result in (on_duck, on_spark)
    ]
    assert quarantined[0] == quarantined[1]
    assert _table_rows(spark_ws, "transactions") == _table_rows(duck_ws, "transactions")


def test_profile_and_clv_on_spark_ingested_tables_equal_duckdb(ingested):
    duck_ws, spark_ws, _, _ = ingested
    as_of = date(2026, 6, 1)
    fits = [ws.clv.fit(as_of=as_of) for ws in (duck_ws, spark_ws)]
    for name, value in fits[0].params.items():
        assert fits[1].params[name] == pytest.approx(value, rel=1e-6), name
    for name, value in fits[0].spend_params.items():
        assert fits[1].spend_params[name] == pytest.approx(value, rel=1e-6), name
    duck_ws.profile(as_of=as_of)
    spark_ws.profile(as_of=as_of)
    got, expected = _table_rows(spark_ws, "profiles"), _table_rows(duck_ws, "profiles")
    assert len(got) == len(expected) == 150
    for row, want in zip(got, expected, strict=True):
        for value, wanted in zip(row, want, strict=True):
            if isinstance(wanted, float) and isinstance(value, float):
                # parallel sums differ in their last bits, and the CLV columns carry that through
                assert value == pytest.approx(wanted, rel=1e-6, abs=1e-9), (row, want)
            else:
                assert value == wanted, (row, want)


def test_mapped_catalog_table_is_checked_and_read_where_it_lies(ingested, spark_session):
    from micromarketing.errors import ConfigError

    duck_ws, spark_ws, _, _ = ingested
    spark_session.sql("CREATE DATABASE IF NOT EXISTS lake")
    stored = spark_session.table("ingested.stores")
    stored.write.saveAsTable("lake.shops", mode="overwrite")
    stored.drop("lat").write.saveAsTable("lake.shops_no_lat", mode="overwrite")
    text_lon = stored.withColumn("lon", stored.lon.cast("string"))
    text_lon.write.saveAsTable("lake.shops_text_lon", mode="overwrite")

    def opened(target: str) -> Workspace:
        settings = _spark_settings(duck_ws, "mapped")
        settings.warehouse.tables = {"stores": target}
        ws = Workspace(spark_ws.root, settings)
        ws.warehouse.con  # noqa: B018  (opening checks the mapping)
        return ws

    with pytest.raises(ConfigError, match=r"stores = 'lake.shops_no_lat'.*column 'lat' \(float\) is missing"):
        opened("lake.shops_no_lat")
    with pytest.raises(ConfigError, match=r"column 'lon' is string, expected float"):
        opened("lake.shops_text_lon")
    ws = opened("lake.shops")
    assert _table_rows(ws, "stores") == _table_rows(duck_ws, "stores")
    from micromarketing.errors import BackendUnsupportedError

    with pytest.raises(BackendUnsupportedError, match="mapped to the catalog table 'lake.shops'"):
        ws.warehouse.upsert("stores", ws.table("stores"))
    ws.warehouse.close()


def test_a_consent_table_from_before_ends_gains_the_column_and_a_mapped_one_reads_as_no_end(
    ingested, spark_session
):
    """A Spark workspace whose consent table predates ``valid_until`` gains it when opened
    (ALTER TABLE … ADD COLUMNS), and a pause recorded there lapses at its end; a lakehouse
    consent table without the column, mapped in, reads as records that never end."""
    from micromarketing.privacy.consent import current_consent, statuses_in_force

    duck_ws, spark_ws, _, _ = ingested
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    spark_session.sql("CREATE DATABASE IF NOT EXISTS old_ledger")
    spark_session.sql(
        "CREATE TABLE old_ledger.consent (customer_id STRING, channel STRING, status STRING, "
        "recorded_at TIMESTAMP, source STRING, purpose STRING) USING parquet")
    spark_session.sql("INSERT INTO old_ledger.consent VALUES "
                      "('C1', 'email', 'opt_in', TIMESTAMP'2025-01-01 00:00:00', 'old', 'marketing')")
    ws = Workspace(spark_ws.root, _spark_settings(duck_ws, "old_ledger"))
    ws.warehouse.ensure_schema()
    assert "valid_until" in spark_session.table("old_ledger.consent").columns
    ws.privacy.record_consent("C1", "email", "opt_out", at=t0, valid_until=t0 + timedelta(days=7),
                              source="preference centre")
    wanted = {("email", "C1")}
    assert statuses_in_force(ws.context, wanted, at=t0 + timedelta(days=6)) == {("email", "C1"): "opt_out"}
    assert statuses_in_force(ws.context, wanted, at=t0 + timedelta(days=7)) == {("email", "C1"): "opt_in"}
    ws.warehouse.close()

    spark_session.sql("CREATE DATABASE IF NOT EXISTS lake")
    spark_session.table("ingested.consent").drop("valid_until").write.saveAsTable(
        "lake.consent_v1", mode="overwrite")
    settings = _spark_settings(duck_ws, "mapped_ledger")
    settings.warehouse.tables = {"consent": "lake.consent_v1"}
    mapped = Workspace(spark_ws.root, settings)
    got = current_consent(mapped.context).to_pyarrow().to_pylist()
    expected = current_consent(duck_ws.context).to_pyarrow().to_pylist()
    key = ("customer_id", "channel", "purpose")
    assert {tuple(r[k] for k in key): (r["status"], r["valid_until"]) for r in got} == {
        tuple(r[k] for k in key): (r["status"], None) for r in expected}
    assert "valid_until" not in spark_session.table("lake.consent_v1").columns  # read, never altered
    mapped.warehouse.close()


def _spark_workspace_with_customers(root: Path, duck_ws: Workspace, database: str, data: dict) -> Workspace:
    """A Spark workspace at ``root`` (catalog database ``database``) with the customers ingested."""
    from micromarketing.config import write_default_settings

    write_default_settings(root)
    ws = Workspace(root, _spark_settings(duck_ws, database))
    ws.warehouse.ensure_schema()
    ws.ops.create_all()
    ws.ingest("customers", data["customers"])
    return ws


def _delete_table_files(spark_session, table: str) -> None:
    """Delete the Parquet files under ``table``: the next Spark job reading it fails."""
    details = spark_session.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
    location = next(r.data_type for r in details if r.col_name == "Location")
    deleted = list(Path(location.removeprefix("file:")).glob("*.parquet"))
    assert deleted
    for part in deleted:
        part.unlink()


def test_a_spark_failure_in_a_cli_command_prints_one_line(ingested, spark_session, tmp_path):
    """Parquet files deleted under a table: the re-ingest's Spark job fails, the CLI says so in one line."""
    from typer.testing import CliRunner

    from micromarketing.cli.main import app

    duck_ws, _, _, data = ingested
    ws = _spark_workspace_with_customers(tmp_path, duck_ws, "broken", data)
    _delete_table_files(spark_session, "broken.customers")
    env = {"MICROMARKETING_WAREHOUSE__BACKEND": "spark", "MICROMARKETING_WAREHOUSE__DATABASE": "broken"}
    args = ["ingest", "customers", str(data["customers"]), "-w", str(tmp_path)]
    done = CliRunner().invoke(app, args, env=env)
    ws.warehouse.close()
    assert done.exit_code == 2, done.output
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: Spark failed: "), done.stderr  # after the progress bar
    assert [line for line in errors if line.startswith("error")] == errors[-1:]
    assert not [n for n in ("Traceback", "\tat ", "JVM stacktrace") if n in done.output], done.output


def test_a_spark_failure_in_an_api_request_is_a_503(ingested, spark_session, tmp_path, monkeypatch, caplog):
    """The same real failure (files deleted under a table) while the REST API looks a customer up,
    and on a key-less public route: an RFC 9457 problem with status 503 saying in one generic line
    that the engine failed, not a 500; the Spark failure (with its server paths) goes to the log."""
    from fastapi.testclient import TestClient

    from micromarketing.api import create_app
    from micromarketing.personalize.templates import token_secret
    from micromarketing.tokens import unsubscribe_token

    duck_ws, _, _, data = ingested
    ws = _spark_workspace_with_customers(tmp_path, duck_ws, "broken_api", data)
    key = ws.api_keys.create("viewer", "spark").key
    customer = ws.table("customers").customer_id.execute().iloc[0]
    token = unsubscribe_token(token_secret(ws.context), customer)
    ws.warehouse.close()
    _delete_table_files(spark_session, "broken_api.customers")
    monkeypatch.setenv("MICROMARKETING_WAREHOUSE__BACKEND", "spark")
    monkeypatch.setenv("MICROMARKETING_WAREHOUSE__DATABASE", "broken_api")
    with caplog.at_level("ERROR", logger="micromarketing.api"), TestClient(
        create_app(tmp_path, rate_limit=0)
    ) as client:
        answers = [client.get(f"/api/v1/customers/{customer}", headers={"Authorization": f"Bearer {key}"}),
                   client.get(f"/preferences/{token}")]
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["type"] == "urn:micromarketing:problem:engine" and body["status"] == 503
        assert body["detail"] == "the warehouse engine failed (the error is logged on the server)"
        shown = json.dumps({k: v for k, v in body.items() if k != "instance"})  # the path asked for
        leaks = ("Traceback", "\tat ", "JVM stacktrace", "Spark", "/", ".log")
        assert not [n for n in leaks if n in shown], shown
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "micromarketing.api"]
    assert len(logged) == 2 and all("Spark failed: " in m for m in logged), logged


# -- segment discovery: fitted on a sample, everything per customer in Spark ----------------------
@pytest.fixture(scope="module")
def discovery_engines(spark_session, tmp_path_factory):
    """(DuckDB workspace, Spark workspace) holding the same profiled customers, each with its own
    operations store (their discovered segments must not meet)."""
    from micromarketing.config import write_default_settings
    from micromarketing.datasets import generate

    base = tmp_path_factory.mktemp("discovery")
    data = generate(base / "data", customers=300, seed=5).paths
    duck_ws = Workspace.init(base / "duck")
    for kind in ("stores", "customers", "transactions", "events"):
        duck_ws.ingest(kind, data[kind])
    duck_ws.profile()
    root = base / "spark"
    root.mkdir()
    write_default_settings(root)
    spark_ws = Workspace(root, _spark_settings(duck_ws, "discovery"))
    spark_ws.ops.create_all()
    # what discovery reads: the features' sources and the personas' categorical fields
    read = ["customers", "transactions", "events", "profiles"]
    spark_ws.warehouse.load_tables_from(duck_ws.warehouse, read)
    spark_session.conf.set("spark.sql.shuffle.partitions", "1")
    yield duck_ws, spark_ws
    spark_ws.warehouse.close()
    duck_ws.close()


def test_discovery_on_spark_equals_duckdb_and_pulls_only_the_fit_sample(discovery_engines, monkeypatch):
    """With a fit sample smaller than the population, both engines pick the same customers (the
    MD5 rule), fit the same centres and save the same members; on Spark nothing that comes back
    to the driver holds more customers than the sample (every Ibis result goes through the
    backend's ``execute``, which is counted here)."""
    from micromarketing.segments import discover

    duck_ws, spark_ws = discovery_engines
    monkeypatch.setattr(discover, "FIT_SAMPLE", 120)
    con = spark_ws.warehouse.con
    execute = con.execute
    pulled: list[tuple[tuple[str, ...], int]] = []

    def counted(expr: Any, *args: Any, **kwargs: Any) -> Any:
        out = execute(expr, *args, **kwargs)
        pulled.append((tuple(expr.as_table().columns), len(out) if hasattr(out, "__len__") else 1))
        return out

    monkeypatch.setattr(con, "execute", counted)
    on_duck = discover.discover_segments(duck_ws, k=3, seed=0)
    on_spark = discover.discover_segments(spark_ws, k=3, seed=0)
    during = list(pulled)
    monkeypatch.setattr(con, "execute", execute)
    for result in (on_duck, on_spark):
        assert (result.customers, result.fitted_on) == (300, 120)
        assert sum(s.size for s in result.segments) == 300
    assert [(s.name, s.size) for s in on_spark.segments] == [(s.name, s.size) for s in on_duck.segments]
    assert [s.persona.name for s in on_spark.segments] == [s.persona.name for s in on_duck.segments]
    members = [rows(ws.table("segment_members")["segment", "customer_id"]) for ws in (duck_ws, spark_ws)]
    assert members[1] == members[0] and len(members[0]) == 300
    with_ids = [n for columns, n in during if "customer_id" in columns]
    assert max(with_ids) == 120  # the fit sample, and nothing per customer beyond it
    assert max(n for _, n in during) < 300, sorted(during, key=lambda p: -p[1])[:3]


def test_discovery_rerun_on_spark_writes_members_once_and_retires_like_duckdb(discovery_engines, monkeypatch):
    """A re-run with fewer clusters re-versions and retires the same segments on both engines,
    and on Spark (where each write rewrites the members table) all of it is one ``replace_rows``
    call: the real one, recorded on the way."""
    from micromarketing.segments import MEMBERS_TABLE, discover

    duck_ws, spark_ws = discovery_engines
    monkeypatch.setattr(discover, "FIT_SAMPLE", 120)
    for ws in (duck_ws, spark_ws):
        discover.discover_segments(ws, k=3, seed=1, prefix="rerun")
    writes: list[dict] = []
    replace_rows = spark_ws.warehouse.replace_rows

    def recorded(name: str, rows: Any, match: dict) -> int:
        if name == MEMBERS_TABLE:
            writes.append(match)
        return replace_rows(name, rows, match)

    monkeypatch.setattr(spark_ws.warehouse, "replace_rows", recorded)
    on_duck = discover.discover_segments(duck_ws, k=2, seed=1, prefix="rerun")
    on_spark = discover.discover_segments(spark_ws, k=2, seed=1, prefix="rerun")
    assert on_spark.retired == on_duck.retired and len(on_spark.retired) == 1
    assert [(s.name, s.version, s.size) for s in on_spark.segments] == [
        (s.name, s.version, s.size) for s in on_duck.segments
    ]
    assert writes == [{"segment": [s.name for s in on_spark.segments] + on_spark.retired,
                       "as_of": on_spark.as_of}]
    members = []
    for ws in (duck_ws, spark_ws):
        t = ws.table(MEMBERS_TABLE)
        mine = t.filter(t.segment.startswith("rerun"))
        members.append(rows(mine["segment", "version", "as_of", "customer_id"]))
    assert members[1] == members[0]
    latest = {(segment, version) for segment, version, as_of, _ in members[0] if as_of == on_duck.as_of}
    assert latest == {(s.name, s.version) for s in on_duck.segments}  # the retired one emptied
    assert on_spark.warnings == on_duck.warnings
