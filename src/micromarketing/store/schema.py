"""The warehouse tables that ingest fills: columns, types, keys and per-field checks.

This is the single description of the input data.  Ingest derives its validation from it, the
warehouse derives its DDL from it, and the demo-data generator writes files that match it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp"]
Check = Literal["email", "phone", "currency", "non_negative", "latitude", "longitude", "country"]

EVENT_TYPES = (
    "page_view",
    "product_view",
    "add_to_cart",
    "search",
    "app_open",
    "email_open",
    "email_click",
    "sms_click",
    "push_open",
    "unsubscribe",
)
# The channel each engagement event type shows a customer responds to (when the event names none).
ENGAGEMENT_CHANNELS: dict[str, str] = {
    "email_open": "email",
    "email_click": "email",
    "sms_click": "sms",
    "push_open": "push",
    "app_open": "app",
    "page_view": "web",
    "product_view": "web",
    "add_to_cart": "web",
    "search": "web",
}
CHANNELS = ("email", "sms", "push", "web", "app", "post", "ads", "phone", "store")
CONSENT_CHANNELS = ("email", "sms", "push", "post", "ads", "phone")
CONSENT_STATUSES = ("opt_in", "opt_out")
ORDER_CHANNELS = ("online", "store", "app", "phone")


@dataclass(frozen=True)
class Column:
    """One column of an ingestible table."""

    name: str
    type: ColumnType
    required: bool = False
    check: Check | None = None
    allowed: tuple[str, ...] | None = None
    default: str | None = None  # SQL literal used when the file lacks the column or the cell is empty
    # An end (timestamp): must be later than this column of the same row, and may lie beyond
    # ingest time + ``max_future`` (an expiry is in the future by nature).
    after: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """An ingestible table: its columns and the key that makes re-ingesting idempotent."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    derived: tuple[Column, ...] = ()  # computed at ingest, never read from a file
    maintained: tuple[Column, ...] = ()  # kept current by the warehouse on every write

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for col in self.columns + self.derived:
            if col.name == name:
                return col
        raise KeyError(name)


CUSTOMERS = TableSpec(
    name="customers",
    key=("customer_id",),
    columns=(
        Column("customer_id", "string", required=True),
        Column("first_name", "string"),
        Column("last_name", "string"),
        Column("email", "string", check="email"),
        Column("phone", "string", check="phone"),
        Column("birth_date", "date"),
        Column("gender", "string"),
        Column("job_title", "string"),
        Column("city", "string"),
        Column("postcode", "string"),
        Column("country", "string", check="country"),
        Column("lat", "float", check="latitude"),
        Column("lon", "float", check="longitude"),
        Column("timezone", "string"),
        Column("signup_date", "date"),
        Column("interests", "string"),  # ';'-separated lifestyle / interest tags
    ),
    derived=(Column("h3_cell", "string"),),
)

PRODUCTS = TableSpec(
    name="products",
    key=("product_id",),
    columns=(
        Column("product_id", "string", required=True),
        Column("name", "string"),
        Column("category", "string", required=True),
        Column("price", "float", check="non_negative"),
        Column("currency", "string", check="currency"),
        Column("repeatable", "bool", default="TRUE"),
    ),
)

STORES = TableSpec(
    name="stores",
    key=("store_id",),
    columns=(
        Column("store_id", "string", required=True),
        Column("name", "string"),
        Column("city", "string"),
        Column("postcode", "string"),
        Column("country", "string", check="country"),
        Column("lat", "float", required=True, check="latitude"),
        Column("lon", "float", required=True, check="longitude"),
    ),
)

TRANSACTIONS = TableSpec(
    name="transactions",
    key=("order_id", "line_no"),
    columns=(
        Column("order_id", "string", required=True),
        Column("line_no", "int", check="non_negative", default="1"),
        Column("customer_id", "string", required=True),
        Column("ordered_at", "timestamp", required=True),
        Column("product_id", "string"),
        Column("category", "string"),
        Column("quantity", "int", check="non_negative", default="1"),
        Column("amount", "float", required=True, check="non_negative"),
        Column("currency", "string", required=True, check="currency"),
        Column("channel", "string", allowed=ORDER_CHANNELS),
        Column("store_id", "string"),
    ),
    # TRUE on the first line (lowest line_no) of each order: counting heads counts distinct
    # orders inside any other aggregation, without a COUNT(DISTINCT) pass over the lines.
    maintained=(Column("order_head", "bool"),),
)

EVENTS = TableSpec(
    name="events",
    key=("event_id",),
    columns=(
        Column("event_id", "string", required=True),
        Column("customer_id", "string", required=True),
        Column("event_type", "string", required=True, allowed=EVENT_TYPES),
        Column("occurred_at", "timestamp", required=True),
        Column("channel", "string", allowed=CHANNELS),
        Column("product_id", "string"),
        Column("campaign_id", "string"),
    ),
)

# The consent ledger: append-only; per (customer, channel, purpose) the latest record still valid
# at the moment asked is in force (micromarketing.privacy.consent).  ``purpose`` is "marketing"
# (the channel's consent) or a topic such as "newsletter" (micromarketing.preferences); records
# ingested without one are marketing.  ``valid_until`` (NULL: no end) ends a record: a pause is
# an opt_out until the pause's end, after which the record beneath is in force again.
DEFAULT_PURPOSE = "marketing"
CONSENT = TableSpec(
    name="consent",
    key=("customer_id", "channel", "purpose", "recorded_at"),
    columns=(
        Column("customer_id", "string", required=True),
        Column("channel", "string", required=True, allowed=CONSENT_CHANNELS),
        Column("status", "string", required=True, allowed=CONSENT_STATUSES),
        Column("recorded_at", "timestamp", required=True),
        Column("source", "string"),
        Column("purpose", "string", default=DEFAULT_PURPOSE),
        Column("valid_until", "timestamp", after="recorded_at"),
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (CUSTOMERS, PRODUCTS, STORES, TRANSACTIONS, EVENTS, CONSENT)
}

SQL_TYPES: dict[ColumnType, str] = {  # DuckDB
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
}
SPARK_TYPES: dict[ColumnType, str] = {
    "string": "STRING",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",  # Spark's TIMESTAMP is instant-based (session time zone UTC)
}


def create_table_ddl(spec: TableSpec, dialect: Literal["duckdb", "spark"], using: str = "parquet") -> str:
    """``CREATE TABLE`` for ``spec`` in ``dialect``.

    DuckDB gets the key as a primary key (``INSERT OR REPLACE`` needs it); Spark has no
    constraints, so the table is a plain ``USING <format>`` table and the warehouse keeps the
    key unique by rewriting it (:meth:`micromarketing.store.spark.SparkWarehouse.upsert`).
    """
    columns = spec.columns + spec.derived + spec.maintained
    if dialect == "duckdb":
        cols = ", ".join(f"{_quoted(c.name, DOUBLE_QUOTE)} {SQL_TYPES[c.type]}" for c in columns)
        key = ", ".join(_quoted(k, DOUBLE_QUOTE) for k in spec.key)
        return f"CREATE TABLE {_quoted(spec.name, DOUBLE_QUOTE)} ({cols}, PRIMARY KEY ({key}))"
    cols = ", ".join(f"{_quoted(c.name, BACKTICK)} {SPARK_TYPES[c.type]}" for c in columns)
    return f"CREATE TABLE IF NOT EXISTS {_quoted(spec.name, BACKTICK)} ({cols}) USING {using}"


DOUBLE_QUOTE, BACKTICK = '"', "`"


def _quoted(name: str, quote: str) -> str:
    return quote + name.replace(quote, quote * 2) + quote
