"""The per-customer feature matrix that segment discovery clusters on, computed in the warehouse.

What it owns
------------
:data:`FEATURES` (the catalogue of clusterable features: group, unit, whether ``log1p`` tames its
tail), :func:`feature_table` (one Ibis expression over ``profiles`` + ``transactions`` +
``events`` as of the profiles' ``as_of`` date), :func:`clustering_features` (that expression
computed once into a temporary warehouse table, missing values imputed: what discovery samples,
standardises, assigns and describes without pulling it to the driver), :func:`transformed` (the
``log1p`` of the heavy-tailed columns, as Ibis expressions), :class:`Standardiser` (centre and
scale, fitted by an aggregate and applied as expressions) and :func:`load_features` (the whole
matrix as numpy, for analysis and tests).

Features (the names match :data:`micromarketing.datasets.CLUSTER_FEATURES`):

* behaviour — ``recency_days``, ``frequency`` (distinct orders), ``tenure_days``,
  ``store_order_share`` (orders placed in a store / orders), ``email_opens_90d`` and
  ``email_clicks_90d`` (events in the 90 days before ``as_of``);
* value — ``monetary`` (spend), ``avg_order_value``;
* lifestyle — ``age``, ``store_distance_km`` (nearest store, from the profile) and
  ``share_<category>``: that category's share of the customer's spend, one column per category
  present in the transactions (at most :data:`MAX_CATEGORIES`, by spend; the rest is left out).

Only orders and events strictly before ``as_of`` (midnight UTC) count, as in the profile.

Customers without orders are **excluded** from the matrix: recency, order value, channel and
category shares are undefined for them, and imputing them would put every prospect into one
artificial cluster that merely restates ``rfm_segment = 'prospects'`` (a rule segment
``frequency = 0`` already selects them); the count left out is reported.
Missing age or distance (no birth date / no coordinates) is imputed with the buyers' mean, so it
does not pull a customer towards any cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np

from micromarketing.errors import DataError
from micromarketing.exprs import left_join_on_customer, midnight_utc
from micromarketing.segments.catalog import did_you_mean
from micromarketing.store.context import StoreContext

EMAIL_WINDOW_DAYS = 90
MAX_CATEGORIES = 30


@dataclass(frozen=True)
class FeatureSpec:
    """One clusterable feature: its group, how it reads in a persona, and its transform."""

    name: str
    group: str  # behaviour | value | lifestyle
    label: str
    unit: str = ""
    log: bool = False  # log1p before standardising (heavy right tail: money and counts)


FEATURES: dict[str, FeatureSpec] = {
    f.name: f
    for f in (
        FeatureSpec("recency_days", "behaviour", "days since last order", "days"),
        FeatureSpec("frequency", "behaviour", "orders", "", log=True),
        FeatureSpec("monetary", "value", "total spend", "money", log=True),
        FeatureSpec("avg_order_value", "value", "average order value", "money", log=True),
        FeatureSpec("tenure_days", "behaviour", "days as a customer", "days"),
        FeatureSpec("age", "lifestyle", "age", "years"),
        FeatureSpec("store_distance_km", "lifestyle", "distance to the nearest store", "km", log=True),
        FeatureSpec("store_order_share", "behaviour", "share of orders in store", "share"),
        FeatureSpec("email_opens_90d", "behaviour", "e-mail opens in 90 days", "", log=True),
        FeatureSpec("email_clicks_90d", "behaviour", "e-mail clicks in 90 days", "", log=True),
    )
}
GROUPS = ("behaviour", "value", "lifestyle")
CATEGORY_PREFIX = "share_"
# Descriptive columns pulled back with the matrix for personas (never clustered on).
DESCRIPTIVE = ("order_interval_days", "clv")


def category_feature(category: str) -> FeatureSpec:
    """The spend-share feature of one product category (``share_<slug>``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "unknown"
    return FeatureSpec(f"{CATEGORY_PREFIX}{slug}", "lifestyle", f"share of spend on {category}", "share")


@dataclass
class FeatureMatrix:
    """What :func:`load_features` pulled back: ids, the raw matrix and descriptive columns."""

    as_of: date
    customer_ids: np.ndarray  # object array of str, one per row
    names: list[str]
    specs: list[FeatureSpec]
    values: np.ndarray  # float64 (n, len(names)), raw units, NaN already imputed
    descriptive: dict[str, np.ndarray] = field(default_factory=dict)  # float64, NaN where unknown
    excluded_no_orders: int = 0
    categories: dict[str, str] = field(default_factory=dict)  # feature name -> category

    @property
    def n(self) -> int:
        return len(self.customer_ids)


def profiles_as_of(ctx: StoreContext) -> date:
    """The ``as_of`` date of the stored profiles (discovery always runs on that snapshot)."""
    if not ctx.warehouse.has_table("profiles"):
        raise DataError("no profiles yet: run `micromarketing profile` before discovering segments")
    value = ctx.table("profiles").as_of.max().execute()
    if value is None or value != value:
        raise DataError("the profiles table is empty: ingest customers and run `profile` first")
    return value if isinstance(value, date) and not isinstance(value, datetime) else value.date()


def available_categories(ctx: StoreContext, as_of: date) -> list[str]:
    """Product categories with spend before ``as_of``, largest spend first (at most MAX_CATEGORIES)."""
    tx = ctx.table("transactions")
    tx = tx.filter(tx.ordered_at < midnight_utc(as_of), tx.category.notnull())
    rows = (
        tx.group_by("category")
        .aggregate(spend=tx.amount.sum())
        .order_by([ibis.desc("spend"), "category"])
        .limit(MAX_CATEGORIES)
        .to_pyarrow()
        .to_pylist()
    )
    return [r["category"] for r in rows]


def resolve_features(requested: list[str] | None, categories: list[str]) -> list[FeatureSpec]:
    """The feature specs for ``requested`` names or groups (None: every feature).

    Accepts feature names, group names (``behaviour``, ``value``, ``lifestyle``) and
    ``categories`` (every ``share_<category>``); raises :class:`DataError` naming an unknown one.
    """
    cat_specs = {category_feature(c).name: category_feature(c) for c in categories}
    every = {**FEATURES, **cat_specs}
    if not requested:
        return list(every.values())
    chosen: dict[str, FeatureSpec] = {}
    for raw in requested:
        for item in (p.strip() for p in raw.split(",")):
            if not item:
                continue
            if item in every:
                chosen[item] = every[item]
            elif item in GROUPS:
                chosen.update({n: s for n, s in every.items() if s.group == item})
            elif item == "categories":
                chosen.update(cat_specs)
            else:
                known = sorted(every) + list(GROUPS) + ["categories"]
                raise DataError(
                    f"unknown feature {item!r}{did_you_mean(item, known)}; known: {', '.join(known)}"
                )
    if len(chosen) < 2:
        raise DataError("discovery needs at least two features")
    return [spec for name, spec in every.items() if name in chosen]  # catalogue order, whatever the request


def feature_table(ctx: StoreContext, as_of: date, categories: list[str]) -> ir.Table:
    """Every feature (and the descriptive columns) for customers with orders, as one Ibis expression.

    Nothing is executed: the warehouse runs it as one statement when the caller asks for rows.
    """
    cutoff = midnight_utc(as_of)
    profiles = ctx.table("profiles")
    profiles = profiles.filter(profiles.frequency > 0)
    tx = ctx.table("transactions")
    tx = tx.filter(tx.ordered_at < cutoff)
    events = ctx.table("events")
    window_start = midnight_utc(as_of - timedelta(days=EMAIL_WINDOW_DAYS))
    events = events.filter(
        events.occurred_at >= window_start,
        events.occurred_at < cutoff,
        events.event_type.isin(["email_open", "email_click"]),
    )

    # Distinct store orders, so an order split over lines counts once (the profile's frequency is
    # the distinct orders of every channel).
    spend_aggs: dict[str, ir.Value] = {
        "spend_total": tx.amount.sum(),
        "store_orders": ibis.ifelse(tx.channel == "store", tx.order_id, None).nunique(),
    }
    for c in categories:
        spend_aggs[f"_spend_{category_feature(c).name}"] = ibis.ifelse(tx.category == c, tx.amount, 0.0).sum()
    spend = tx.group_by("customer_id").aggregate(**spend_aggs)
    email = events.group_by("customer_id").aggregate(
        email_opens_90d=(events.event_type == "email_open").cast("int64").sum(),
        email_clicks_90d=(events.event_type == "email_click").cast("int64").sum(),
    )

    t = left_join_on_customer(profiles, spend)
    t = left_join_on_customer(t, email)
    total = ibis.ifelse(t.spend_total > 0, t.spend_total, None)
    columns: dict[str, ir.Value] = {
        "recency_days": t.recency_days.cast("float64"),
        "frequency": t.frequency.cast("float64"),
        "monetary": t.monetary.cast("float64"),
        "avg_order_value": t.avg_order_value.cast("float64"),
        "tenure_days": t.tenure_days.cast("float64"),
        "age": t.age.cast("float64"),
        "store_distance_km": t.nearest_store_km.cast("float64"),
        "store_order_share": t.store_orders.fill_null(0).cast("float64") / t.frequency.cast("float64"),
        "email_opens_90d": t.email_opens_90d.fill_null(0).cast("float64"),
        "email_clicks_90d": t.email_clicks_90d.fill_null(0).cast("float64"),
    }
    for c in categories:
        name = category_feature(c).name
        columns[name] = (t[f"_spend_{name}"] / total).fill_null(0.0).cast("float64")
    span_days = t.last_order_at.delta(t.first_order_at, unit="day").cast("float64")
    columns["order_interval_days"] = ibis.ifelse(t.frequency > 1, span_days / (t.frequency - 1), None)
    columns["clv"] = t.clv.cast("float64") if "clv" in profiles.columns else ibis.null("float64")
    return t.select("customer_id", **columns)


@dataclass
class ClusteringFeatures:
    """The clustered customers' features, held in the warehouse (see :func:`clustering_features`)."""

    as_of: date
    names: list[str]
    specs: list[FeatureSpec]
    table: ir.Table  # customer_id, the features (missing values imputed) and the DESCRIPTIVE columns
    n: int  # customers with orders (the rows of ``table``)
    excluded_no_orders: int
    categories: dict[str, str] = field(default_factory=dict)  # feature name -> category


@contextmanager
def clustering_features(
    ctx: StoreContext, features: list[str] | None = None, as_of: date | None = None
) -> Iterator[ClusteringFeatures]:
    """:func:`feature_table` computed once into a temporary warehouse table, dropped on exit.

    ``features`` selects names or groups (see :func:`resolve_features`).  ``as_of`` defaults to
    the profiles' date and must equal it: the profile columns are a snapshot of that date.  A
    missing feature value is replaced by the mean of the known ones (0 when none is known), by one
    aggregate; the rows stay in the warehouse.
    """
    stored = profiles_as_of(ctx)
    if as_of is not None and as_of != stored:
        raise DataError(
            f"profiles are as of {stored}, not {as_of}: run `micromarketing profile --as-of {as_of}` "
            "before discovering segments for that date"
        )
    as_of = stored
    categories = available_categories(ctx, as_of)
    specs = resolve_features(features, categories)
    names = [s.name for s in specs]
    cat_names = {category_feature(c).name: c for c in categories}
    expr = feature_table(ctx, as_of, [cat_names[n] for n in names if n in cat_names])
    expr = expr.select("customer_id", *names, *DESCRIPTIVE)
    with ctx.warehouse.temporary("features", expr) as raw:
        stats = raw.aggregate(_n=raw.count(), **{f"_m{j}": raw[n].mean() for j, n in enumerate(names)})
        row = stats.to_pyarrow().to_pylist()[0]
        means = [row[f"_m{j}"] for j in range(len(names))]
        fills = {n: float(m) if m is not None else 0.0 for n, m in zip(names, means, strict=True)}
        imputed = raw.mutate(**{n: raw[n].fill_null(fill) for n, fill in fills.items()})
        total = int(ctx.table("profiles").count().to_pyarrow().as_py())
        yield ClusteringFeatures(
            as_of=as_of,
            names=names,
            specs=specs,
            table=imputed,
            n=int(row["_n"]),
            excluded_no_orders=total - int(row["_n"]),
            categories={n: c for n, c in cat_names.items() if n in names},
        )


def transformed(table: ir.Table, specs: list[FeatureSpec]) -> dict[str, ir.FloatingValue]:
    """Each feature of ``table`` after ``log1p`` on the heavy-tailed ones (negatives clipped to 0),
    as Ibis expressions: the scale discovery standardises and measures distances on."""
    out: dict[str, ir.FloatingValue] = {}
    for spec in specs:
        col = table[spec.name].cast("float64")
        out[spec.name] = (ibis.greatest(col, 0.0) + 1.0).ln() if spec.log else col
    return out


@dataclass
class Standardiser:
    """``log1p`` on the heavy-tailed features, then centre and scale: the space clusters live in."""

    specs: list[FeatureSpec]
    mean: np.ndarray  # of each transformed feature
    scale: np.ndarray  # its population standard deviation (1 for a constant column)

    @classmethod
    def fit(cls, cf: ClusteringFeatures) -> Standardiser:
        """Mean and population standard deviation of every transformed feature over all the
        clustered customers, by one aggregate in the warehouse (exact; one row comes back)."""
        t = transformed(cf.table, cf.specs)
        aggs: dict[str, ir.Value] = {}
        for j, spec in enumerate(cf.specs):
            aggs[f"_m{j}"] = t[spec.name].mean()
            aggs[f"_s{j}"] = t[spec.name].std(how="pop")
        row = cf.table.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        mean = np.array([row[f"_m{j}"] or 0.0 for j in range(len(cf.specs))], dtype=np.float64)
        scale = np.array([row[f"_s{j}"] or 0.0 for j in range(len(cf.specs))], dtype=np.float64)
        return cls(list(cf.specs), mean, np.where(scale > 1e-12, scale, 1.0))

    def columns(self, table: ir.Table) -> dict[str, ir.FloatingValue]:
        """Each feature of ``table`` standardised, as Ibis expressions (float64)."""
        t = transformed(table, self.specs)
        return {
            spec.name: (t[spec.name] - float(self.mean[j])) / float(self.scale[j])
            for j, spec in enumerate(self.specs)
        }

    def standardised(self, table: ir.Table) -> ir.Table:
        """``customer_id`` and the standardised features of ``table``."""
        return table.select("customer_id", **self.columns(table))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [s.name for s in self.specs],
            "log1p": [s.log for s in self.specs],
            "mean": _round(self.mean),
            "scale": _round(self.scale),
        }


def load_features(
    ctx: StoreContext, features: list[str] | None = None, as_of: date | None = None
) -> FeatureMatrix:
    """The whole matrix of :func:`clustering_features` as numpy (rows ordered by customer_id).

    Discovery itself never pulls it (it samples and aggregates in the warehouse); this is for
    analysis, baselines and tests that check the warehouse's answers against numpy's.
    """
    with clustering_features(ctx, features, as_of) as cf:
        data = cf.table.order_by("customer_id").to_pyarrow()
    ids = np.asarray(data.column("customer_id").to_numpy(zero_copy_only=False), dtype=object)
    values = np.empty((data.num_rows, len(cf.names)), dtype=np.float64)
    for j, n in enumerate(cf.names):
        values[:, j] = _floats(data.column(n))
    return FeatureMatrix(
        as_of=cf.as_of,
        customer_ids=ids,
        names=cf.names,
        specs=cf.specs,
        values=values,
        descriptive={n: _floats(data.column(n)) for n in DESCRIPTIVE},
        excluded_no_orders=cf.excluded_no_orders,
        categories=cf.categories,
    )


def _floats(column: Any) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _round(a: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in a]
