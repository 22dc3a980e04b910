"""The demo generator: reproducible bytes, chunk independence, schema conformance, planted facts."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from micromarketing.datasets import REFERENCE_DATE, SEGMENT_SPECS, SEGMENTS, GeneratedDataset, generate
from micromarketing.datasets.reference import STORES
from micromarketing.errors import DataError
from micromarketing.store import schema

EMAIL = re.compile(r"^[a-z0-9][a-z0-9._+-]*@[a-z0-9-]+(\.[a-z0-9-]+)+$")
PHONE = re.compile(r"^\+33[67]\d{8}$")
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TABLE_FILES = {"customers": "customers.csv", "products": "products.csv", "stores": "stores.csv",
               "transactions": "transactions.csv", "consent": "consent.csv"}


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype=str, keep_default_na=False)


def test_same_seed_same_bytes_and_chunking_does_not_matter(
    tmp_path: Path, small_csv: GeneratedDataset
) -> None:
    one_chunk = generate(tmp_path / "a", customers=2_500, seed=5, chunk_size=50_000)  # one chunk
    assert _digests(one_chunk.out) == _digests(small_csv.out)  # fixture used 1,000-customer chunks
    assert one_chunk.rows == small_csv.rows
    other_seed = generate(tmp_path / "b", customers=2_500, seed=6)
    differing = {k for k, v in _digests(other_seed.out).items() if v != _digests(small_csv.out)[k]}
    assert differing == {"customers.csv", "transactions.csv", "events.jsonl", "consent.csv", "truth.csv"}


def test_prefix_of_customers_is_stable_across_sizes(tmp_path: Path, small_csv: GeneratedDataset) -> None:
    smaller = generate(tmp_path / "s", customers=1_000, seed=5)
    big = _read(small_csv.out, "customers.csv")
    assert _read(smaller.out, "customers.csv").equals(big.iloc[:1_000].reset_index(drop=True))


@pytest.mark.parametrize("table", sorted(TABLE_FILES))
def test_csv_columns_match_schema(small_csv: GeneratedDataset, table: str) -> None:
    header = (small_csv.out / TABLE_FILES[table]).open().readline().strip().split(",")
    assert tuple(header) == schema.TABLES[table].column_names


def test_events_jsonl_keys_match_schema(small_csv: GeneratedDataset) -> None:
    with (small_csv.out / "events.jsonl").open() as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == small_csv.rows["events"]
    assert all(tuple(r) == schema.EVENTS.column_names for r in rows)
    events = pd.DataFrame(rows)
    assert events["event_id"].is_unique
    assert set(events["event_type"]) <= set(schema.EVENT_TYPES)
    assert set(events["channel"]) <= set(schema.CHANNELS)
    assert events["occurred_at"].str.match(ISO_UTC).all()
    email = events["event_type"].isin(["email_open", "email_click"])
    assert events.loc[email, "campaign_id"].notna().all()
    assert events.loc[events["event_type"] == "product_view", "product_id"].notna().all()
    occurred = pd.to_datetime(events["occurred_at"], utc=True)
    assert occurred.max() < pd.Timestamp(REFERENCE_DATE, tz="UTC") + pd.Timedelta(days=1)


def test_row_counts_reported(small_csv: GeneratedDataset) -> None:
    for name, path in small_csv.paths.items():
        if path.suffix == ".csv":
            assert len(pd.read_csv(path)) == small_csv.rows[name], name
    assert small_csv.rows["customers"] == small_csv.rows["truth"] == 2_500
    assert small_csv.rows["stores"] == 40


def test_customers_valid(small_csv: GeneratedDataset) -> None:
    c = _read(small_csv.out, "customers.csv")
    assert c["customer_id"].is_unique and c["customer_id"].iloc[0] == "C0000001"
    assert c["email"].str.match(EMAIL).all() and c["email"].is_unique
    assert c["phone"].str.match(PHONE).all()
    assert (c["country"] == "FR").all() and (c["timezone"] == "Europe/Paris").all()
    assert c["birth_date"].str.match(DATE).all() and c["signup_date"].str.match(DATE).all()
    lat, lon = c["lat"].astype(float), c["lon"].astype(float)
    assert lat.between(42, 51.5).all() and lon.between(-5, 8.5).all()  # metropolitan France
    assert (c["postcode"].str.len() == 5).all()
    assert c.loc[c["city"] == "Paris", "postcode"].str.startswith("75").all()
    big_cities = {"Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Lille", "Nantes", "Strasbourg"}
    assert big_cities <= set(c["city"])
    tags = c["interests"].str.split(";")
    assert tags.map(len).between(2, 4).all() and tags.map(lambda t: len(set(t)) == len(t)).all()
    assert pd.to_datetime(c["signup_date"]).max() <= pd.Timestamp(REFERENCE_DATE)


def test_transactions_valid(small_csv: GeneratedDataset) -> None:
    t = _read(small_csv.out, "transactions.csv")
    products = _read(small_csv.out, "products.csv").set_index("product_id")
    customers = set(_read(small_csv.out, "customers.csv")["customer_id"])
    assert not t.duplicated(["order_id", "line_no"]).any()
    assert set(t["customer_id"]) <= customers
    assert t["ordered_at"].str.match(ISO_UTC).all()
    assert (t["currency"] == "EUR").all()
    assert (t["amount"].astype(float) > 0).all() and (t["quantity"].astype(int) >= 1).all()
    assert set(t["channel"]) == {"online", "store", "app"}
    store_ids = {s.store_id for s in STORES}
    assert t.loc[t["channel"] == "store", "store_id"].isin(store_ids).all()
    assert (t.loc[t["channel"] != "store", "store_id"] == "").all()
    assert (products.loc[t["product_id"], "category"].to_numpy() == t["category"].to_numpy()).all()
    # lines of one order share customer, time and channel, and are numbered 1..n
    t["line_no"] = t["line_no"].astype(int)
    per_order = t.groupby("order_id").agg(n=("line_no", "size"), top=("line_no", "max"),
                                           cust=("customer_id", "nunique"), ts=("ordered_at", "nunique"))
    assert (per_order["n"] == per_order["top"]).all()
    assert (per_order["cust"] == 1).all() and (per_order["ts"] == 1).all()
    ordered = pd.to_datetime(t["ordered_at"], utc=True)
    assert ordered.max() < pd.Timestamp(REFERENCE_DATE, tz="UTC") + pd.Timedelta(days=1)
    assert ordered.min() >= pd.Timestamp("2021-07-01", tz="UTC")
    # every customer has at least the first purchase (BG/NBD customers are born by purchasing)
    assert set(t["customer_id"]) == customers


def test_products_stores_consent_valid(small_csv: GeneratedDataset) -> None:
    p = _read(small_csv.out, "products.csv")
    assert p["product_id"].iloc[0] == "P0001" and p["product_id"].is_unique
    assert (p["price"].astype(float) > 0).all() and (p["currency"] == "EUR").all()
    durable = p["category"].isin(["electronics", "furniture"])
    assert (p.loc[durable, "repeatable"] == "false").all() and (p.loc[~durable, "repeatable"] == "true").all()
    s = _read(small_csv.out, "stores.csv")
    assert list(s["store_id"]) == [f"S{i:03d}" for i in range(1, 41)]
    assert s.loc[s["store_id"] == "S012", ["city", "postcode"]].values.tolist() == [["Paris", "75012"]]
    k = _read(small_csv.out, "consent.csv")
    assert set(k["channel"]) == set(schema.CONSENT_CHANNELS)
    assert set(k["status"]) == set(schema.CONSENT_STATUSES)
    assert k["recorded_at"].str.match(ISO_UTC).all()
    assert not k.duplicated(["customer_id", "channel", "recorded_at"]).any()
    first = k.groupby("customer_id")["channel"].agg(lambda c: sorted(set(c)))
    assert (first.map(len) == len(schema.CONSENT_CHANNELS)).all()


def test_unsubscribed_customers_get_no_email_opens_afterwards(small_csv: GeneratedDataset) -> None:
    k = _read(small_csv.out, "consent.csv")
    unsub = k[k["source"] == "unsubscribe_link"].set_index("customer_id")["recorded_at"]
    assert len(unsub) > 0 and (k.loc[k["source"] == "unsubscribe_link", "status"] == "opt_out").all()
    events = pd.read_json(small_csv.out / "events.jsonl", lines=True, dtype={"customer_id": str})
    opens = events[(events["event_type"] == "email_open") & events["customer_id"].isin(unsub.index)]
    cutoff = pd.to_datetime(unsub.loc[opens["customer_id"]].to_numpy(), utc=True)
    assert (pd.to_datetime(opens["occurred_at"], utc=True).to_numpy() < cutoff).all()
    optout_only = set(k.loc[(k["channel"] == "email") & (k["source"] == "signup_form")
                            & (k["status"] == "opt_out"), "customer_id"])
    assert not events[(events["event_type"] == "email_open") & events["customer_id"].isin(optout_only)].size


def test_planted_segment_definitions_hold(small_csv: GeneratedDataset) -> None:
    truth = _read(small_csv.out, "truth.csv").set_index("customer_id")["segment"]
    assert set(truth) == set(SEGMENTS)
    c = _read(small_csv.out, "customers.csv").set_index("customer_id")
    t = pd.read_csv(small_csv.out / "transactions.csv", dtype={"customer_id": str})
    ref_day = pd.Timestamp(REFERENCE_DATE, tz="UTC")
    last = pd.to_datetime(t.groupby("customer_id")["ordered_at"].max(), utc=True)
    recency = (ref_day - last).dt.days
    birth = pd.to_datetime(c["birth_date"])
    had_birthday = (birth.dt.month < REFERENCE_DATE.month) | (
        (birth.dt.month == REFERENCE_DATE.month) & (birth.dt.day <= REFERENCE_DATE.day))
    age = REFERENCE_DATE.year - birth.dt.year - (~had_birthday).astype(int)  # calendar age
    tenure = (pd.Timestamp(REFERENCE_DATE) - pd.to_datetime(c["signup_date"])).dt.days
    seg = truth.loc[c.index]
    assert (recency[seg == "lapsed_high_value"] >= 180).all()
    assert (tenure[seg == "new_high_potential"] <= 90).all()
    for spec in SEGMENT_SPECS:
        assert age[seg == spec.name].between(*spec.age).all(), spec.name
    assert age[seg == "urban_young_eco"].between(25, 34).all()
    # local store regulars live within 2.5 km of a store
    lat = np.radians(c["lat"].astype(float).to_numpy())[:, None]
    lon = np.radians(c["lon"].astype(float).to_numpy())[:, None]
    slat = np.radians([s.lat for s in STORES])[None, :]
    slon = np.radians([s.lon for s in STORES])[None, :]
    h = np.sin((slat - lat) / 2) ** 2 + np.cos(lat) * np.cos(slat) * np.sin((slon - lon) / 2) ** 2
    nearest = pd.Series((2 * 6371.0088 * np.arcsin(np.sqrt(h))).min(axis=1), index=c.index)
    assert (nearest[seg == "local_store_regulars"] <= 2.55).all()
    assert nearest[seg == "mainstream"].min() > 3


def test_mean_order_value_per_segment_matches_gamma_gamma(small_csv: GeneratedDataset) -> None:
    t = pd.read_csv(small_csv.out / "transactions.csv", dtype={"customer_id": str})
    truth = pd.read_csv(small_csv.out / "truth.csv", dtype=str).set_index("customer_id")["segment"]
    orders = t.groupby("order_id").agg(customer_id=("customer_id", "first"), value=("amount", "sum"))
    observed = orders["value"].groupby(truth.loc[orders["customer_id"]].to_numpy()).mean()
    for spec in SEGMENT_SPECS:
        assert observed[spec.name] == pytest.approx(spec.mean_order_value, rel=0.2), spec.name


def test_parquet_types_match_schema(small_parquet: GeneratedDataset) -> None:
    arrow_types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                   "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC")}
    for name in ("customers", "products", "stores", "transactions", "events", "consent"):
        path = small_parquet.paths[name]
        assert path.suffix == ".parquet"
        got = pq.read_schema(path)
        assert got.names == list(schema.TABLES[name].column_names), name
        for col in schema.TABLES[name].columns:
            assert got.field(col.name).type == arrow_types[col.type], (name, col.name)
    tx = pq.read_table(small_parquet.paths["transactions"])
    assert tx.num_rows == small_parquet.rows["transactions"]


def test_parquet_and_csv_hold_the_same_data(small_parquet: GeneratedDataset, tmp_path: Path) -> None:
    csv = generate(tmp_path, customers=1_200, seed=5)
    a = pq.read_table(small_parquet.paths["transactions"]).to_pandas()
    b = pd.read_csv(csv.paths["transactions"], dtype={"store_id": object})
    assert a["amount"].tolist() == b["amount"].tolist()
    assert (a["ordered_at"] == pd.to_datetime(b["ordered_at"], utc=True)).all()
    # writing parquet into the CSV directory replaces the CSV/JSONL files instead of mixing formats
    again = generate(tmp_path, customers=10, seed=5, fmt="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in again.paths.values())


def test_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        generate(tmp_path / "file", customers=10)
    with pytest.raises(ValueError, match="customers"):
        generate(tmp_path / "x", customers=0)
    with pytest.raises(ValueError, match="fmt"):
        generate(tmp_path / "x", customers=10, fmt="xlsx")  # type: ignore[arg-type]


@pytest.mark.parametrize("table", sorted(schema.TABLES))
def test_every_value_casts_to_the_warehouse_type(small_csv: GeneratedDataset, table: str) -> None:
    """DuckDB reads each file as text (as ingest does) and every cell casts to the schema's SQL type."""
    import duckdb

    spec = schema.TABLES[table]
    path = str(small_csv.paths[table]).replace("'", "''")
    if path.endswith(".jsonl"):
        source = f"read_json('{path}', format='newline_delimited', columns={{"
        source += ", ".join(f"'{c}': 'VARCHAR'" for c in spec.column_names) + "})"
    else:
        source = f"read_csv('{path}', all_varchar=true, header=true)"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE t AS SELECT * FROM {source}")
    source = "t"
    for col in spec.columns:
        sql_type = schema.SQL_TYPES[col.type]
        bad = con.execute(
            f'SELECT count(*) FROM {source} WHERE "{col.name}" IS NOT NULL '
            f'AND TRY_CAST("{col.name}" AS {sql_type}) IS NULL'
        ).fetchone()[0]
        assert bad == 0, (table, col.name)
        if col.required:
            assert con.execute(f'SELECT count(*) FROM {source} WHERE "{col.name}" IS NULL').fetchone()[0] == 0
        if col.allowed:
            values = {r[0] for r in con.execute(f'SELECT DISTINCT "{col.name}" FROM {source}').fetchall()}
            assert values - {None} <= set(col.allowed), (table, col.name)
    con.close()
