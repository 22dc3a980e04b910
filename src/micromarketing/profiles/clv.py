"""Customer lifetime value: summaries in SQL, fitted BTYD models in the workspace, per-customer scores.

This module owns the bridge between the warehouse and the models of
:mod:`micromarketing.profiles.clv_models`: the per-customer summary (frequency, recency, T,
monetary value) computed in SQL through Ibis, fitting on unique ``(frequency, recency, T)``
triples, versioned storage of fitted models (:class:`~micromarketing.store.models.ModelVersion`
with kind ``"clv"``), and scoring (P(alive), expected purchases, expected spend, discounted
CLV over the horizon of ``[clv] horizon_months`` and value tiers) joined back to customers.

The models are written here rather than taken from a library: ``lifetimes`` is archived and
breaks with current NumPy/pandas, and ``pymc-marketing`` is Bayesian and slow at a million
customers; see :mod:`micromarketing.profiles.clv_models` and the tests that compare against both.

Value per segment: a fit may be *grouped* (``by`` a customers column, or ``"segments"`` for the
discovered segments): each group with at least ``min_group_size`` customers gets its own models,
smaller groups use the pooled fit, and scoring uses each customer's group model.

Conventions (those of the papers): purchases on the same day are one transaction; ``frequency``
is distinct purchase days minus one; ``recency`` is the time from the first to the last purchase
day; ``T`` is the time from the first purchase day to the last observed day, which is the day
before ``as_of`` (``as_of`` is exclusive: data *before* it are used).  ``monetary_value`` is the
mean of the repeat-purchase day totals (NULL for customers without repeats).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from sqlalchemy import select

from micromarketing.errors import DataError, ModelError
from micromarketing.exprs import midnight_utc
from micromarketing.profiles import clv_models as m
from micromarketing.profiles.as_of import resolve_as_of
from micromarketing.profiles.currency import single_currency
from micromarketing.store.models import ModelVersion
from micromarketing.store.versions import next_version

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext

CLV_KIND = "clv"
# The columns clv_features adds to every profile (after customer_id).
CLV_COLUMNS = (
    "p_alive",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_avg_spend",
    "clv",
    "value_tier",
)
DEFAULT_UNIT_DAYS = 7.0
VALUE_TIERS = ("top_1", "top_10", "top_50", "rest")
SUMMARY_TABLE = "clv_summary"  # the last summary fitted or scored, kept in the warehouse
BY_SEGMENTS = "segments"
DEFAULT_MIN_GROUP_SIZE = 500
NO_GROUP = "(none)"
GROUPS_TABLE = "clv_groups"  # the segment membership a ``--by segments`` fit was made with
ALL_CUSTOMERS = "(all)"
# A source of group membership as of a date (customer_id, group); the facade wires discovered segments.
GroupSource = Callable[[date], ir.Table]


# ---------------------------------------------------------------------------------------------
# Summary statistics in SQL
# ---------------------------------------------------------------------------------------------
def purchase_days(transactions: ir.Table, as_of: date, start: date | None = None) -> ir.Table:
    """One row per customer and purchase day before ``as_of`` (same-day purchases merged).

    Columns: ``customer_id``, ``day``, ``amount`` (the day's total) and ``day_no`` (0 for the
    customer's first purchase day, 1 for the second, ...).
    """
    t = transactions
    flt = t.ordered_at < midnight_utc(as_of)
    if start is not None:
        flt = flt & (t.ordered_at >= midnight_utc(start))
    t = t.filter(flt)
    days = t.group_by([t.customer_id, t.ordered_at.date().name("day")]).aggregate(amount=t.amount.sum())
    return days.mutate(day_no=ibis.row_number().over(group_by=days.customer_id, order_by=days.day))


def clv_summary(
    transactions: ir.Table, as_of: date, unit_days: float = 1.0, start: date | None = None
) -> ir.Table:
    """Per-customer ``frequency, recency, T, monetary_value`` as of ``as_of``, computed in SQL.

    ``transactions`` needs ``customer_id``, ``ordered_at`` and ``amount``.  Only purchases on
    days in ``[start, as_of)`` count; times are in units of ``unit_days`` days (7 = weeks).
    """
    if unit_days <= 0:
        raise ModelError(f"unit_days must be positive, got {unit_days}")
    days = purchase_days(transactions, as_of, start)
    last_day = ibis.date(as_of - timedelta(days=1))
    agg = days.group_by(days.customer_id).aggregate(
        first_day=days.day.min(),
        last_day=days.day.max(),
        n_days=days.day.count(),
        monetary_value=days.amount.mean(where=days.day_no > 0),
    )
    unit = float(unit_days)
    return agg.select(
        agg.customer_id,
        frequency=(agg.n_days - 1).cast("int64"),
        recency=agg.last_day.delta(agg.first_day, unit="day").cast("float64") / unit,
        T=last_day.delta(agg.first_day, unit="day").cast("float64") / unit,
        monetary_value=agg.monetary_value.cast("float64"),
    )


def summary_triples(summary: ir.Table) -> ir.Table:
    """The distinct ``(frequency, recency, T)`` triples of a summary with their customer counts."""
    triples = summary.group_by(["frequency", "recency", "T"]).aggregate(n=summary.count())
    # A fixed order makes the floating-point sums, and so the fitted parameters, reproducible.
    return triples.order_by(["frequency", "recency", "T"])


# ---------------------------------------------------------------------------------------------
# Fitted model
# ---------------------------------------------------------------------------------------------
_CORE_KEYS = {
    "model",
    "as_of",
    "version",
    "unit_days",
    "params",
    "std_errors",
    "loglik",
    "converged",
    "n_customers",
    "gamma_gamma",
    "limit",
    "message",
    "by",
    "min_group_size",
    "groups",
}


@dataclass(frozen=True)
class ClvFit:
    """A fitted transaction model plus Gamma-Gamma spend model, as stored in the workspace.

    ``model`` is the family (``bgnbd`` or ``paretonbd``); ``limit`` names the limit model when
    the optimum lies on it (``homogeneous_dropout``: ``params`` then hold ``r, alpha,
    p_dropout``); likewise ``spend_limit`` for Gamma-Gamma (``constant_customer_spend``:
    ``spend_params`` hold ``q, scale``; ``homogeneous_customer_spend``: ``p, mean_spend``).
    ``spend_mean`` is the expected spend per purchase of a customer without repeat purchases
    (see :func:`micromarketing.profiles.clv_models.gamma_gamma_population_spend`).
    A grouped fit (``by`` set) is the pooled fit plus one :class:`GroupFit` per group.
    """

    model: str
    as_of: date
    unit_days: float
    params: dict[str, float]
    std_errors: dict[str, float]
    loglik: float
    converged: bool
    n_customers: int
    spend_params: dict[str, float]
    spend_std_errors: dict[str, float]
    spend_loglik: float
    spend_converged: bool
    n_repeaters: int
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    message: str = "converged"
    spend_mean: float | None = None
    spend_mean_source: str = "model_mean"
    by: str | None = None
    min_group_size: int | None = None
    groups: tuple[GroupFit, ...] = ()
    spend_limit: str | None = None

    @property
    def transaction_model(self) -> m.TransactionModel:
        return m.transaction_model(self.model, self.limit)

    @property
    def vector(self) -> np.ndarray:
        """The transaction-model parameters in the model's canonical order."""
        return np.array([self.params[k] for k in self.transaction_model.param_names])

    @property
    def spend_vector(self) -> np.ndarray:
        """The spend-model parameters in order (``p, q, gamma``, or ``q, scale`` for the limit)."""
        return np.array([self.spend_params[k] for k in m.SPEND_PARAM_NAMES[self.spend_limit]])

    @property
    def spend_mean_form(self) -> tuple[float, float, float, float]:
        """``(q, scale, eps, w)`` of the spend model, what the one spend formula takes."""
        return m.gamma_gamma_mean_form(self.spend_vector, self.spend_limit)

    @property
    def non_repeater_spend(self) -> float:
        """Expected spend per purchase for customers without repeat purchases (always finite)."""
        if self.spend_mean is not None:
            return self.spend_mean
        q, scale, _, _ = self.spend_mean_form
        if q > 1.0:
            return float(scale / (q - 1.0))
        raise ModelError("this stored fit has q <= 1 and no fallback spend: fit the CLV model again")

    def group_model(self, group: str) -> ClvFit:
        """The fit used for customers of ``group`` (its own, or the pooled one)."""
        for g in self.groups:
            if g.group == group and g.fit is not None:
                return g.fit
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what the CLI prints and ``ModelVersion.params`` stores)."""
        out: dict[str, Any] = {
            "model": self.model,
            "as_of": self.as_of.isoformat(),
            "version": self.version,
            "unit_days": self.unit_days,
            "params": self.params,
            "std_errors": self.std_errors,
            "loglik": self.loglik,
            "converged": self.converged,
            "message": self.message,
            "n_customers": self.n_customers,
            "gamma_gamma": {
                "params": self.spend_params,
                "std_errors": self.spend_std_errors,
                "loglik": self.spend_loglik,
                "converged": self.spend_converged,
                "n_customers": self.n_repeaters,
                "non_repeater_spend": self.non_repeater_spend,
                "non_repeater_spend_source": self.spend_mean_source,
            },
            **self.extra,
        }
        if self.spend_limit is not None:
            out["gamma_gamma"]["limit"] = self.spend_limit
        if self.limit is not None:
            out["limit"] = self.limit
        if self.by is not None:
            out["by"] = self.by
            out["min_group_size"] = self.min_group_size
            out["groups"] = [g.to_dict() for g in self.groups]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, version: int | None = None) -> ClvFit:
        gg = data["gamma_gamma"]
        spend_mean = gg.get("non_repeater_spend")
        return cls(
            model=m.transaction_model(data["model"], data.get("limit")).family,
            as_of=date.fromisoformat(data["as_of"]),
            unit_days=float(data["unit_days"]),
            params={k: float(v) for k, v in data["params"].items()},
            std_errors={k: float(v) for k, v in data["std_errors"].items()},
            loglik=float(data["loglik"]),
            converged=bool(data["converged"]),
            n_customers=int(data["n_customers"]),
            spend_params={k: float(v) for k, v in gg["params"].items()},
            spend_std_errors={k: float(v) for k, v in gg["std_errors"].items()},
            spend_loglik=float(gg["loglik"]),
            spend_converged=bool(gg["converged"]),
            n_repeaters=int(gg["n_customers"]),
            version=version if version is not None else data.get("version"),
            extra={k: v for k, v in data.items() if k not in _CORE_KEYS},
            limit=data.get("limit"),
            message=str(data.get("message", "converged" if data["converged"] else "not converged")),
            spend_mean=None if spend_mean is None else float(spend_mean),
            spend_mean_source=str(gg.get("non_repeater_spend_source", "model_mean")),
            by=data.get("by"),
            min_group_size=data.get("min_group_size"),
            groups=tuple(GroupFit.from_dict(g, data) for g in data.get("groups", ())),
            spend_limit=gg.get("limit"),
        )


@dataclass(frozen=True)
class GroupFit:
    """One group of a grouped fit: its size and its own fit, or ``None`` when it uses the pooled fit."""

    group: str
    customers: int
    fit: ClvFit | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group,
            "customers": self.customers,
            "uses": "own" if self.fit is not None else "pooled",
        }
        if self.reason:
            out["reason"] = self.reason
        if self.fit is not None:
            own = self.fit.to_dict()
            for key in ("as_of", "version", "unit_days"):
                own.pop(key, None)
            out.update(own)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], parent: dict[str, Any]) -> GroupFit:
        fit = None
        if data.get("uses") == "own":
            fit = ClvFit.from_dict({**data, "as_of": parent["as_of"], "unit_days": parent["unit_days"]})
        return cls(str(data["group"]), int(data["customers"]), fit, str(data.get("reason", "")))


def _frames(summary: pd.DataFrame | ir.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(triples with counts, repeaters' (frequency, monetary_value) with counts) of a summary."""
    if isinstance(summary, ir.Table):
        trip = summary_triples(summary).to_pandas()
        repeaters = summary.filter(summary.frequency > 0)
        spend = repeaters.group_by(["frequency", "monetary_value"]).aggregate(n=repeaters.count())
        spend = spend.order_by(["frequency", "monetary_value"]).to_pandas()  # reproducible sums, as above
        return trip, spend
    trip = summary.groupby(["frequency", "recency", "T"], as_index=False).size().rename(columns={"size": "n"})
    rep = summary[summary.frequency > 0]
    spend = rep.groupby(["frequency", "monetary_value"], as_index=False).size().rename(columns={"size": "n"})
    return trip, spend


def _canonical_spend(spend: pd.DataFrame) -> pd.DataFrame:
    """The repeaters' mean spends rounded to 1e-9 of the currency unit, in a fixed order.

    Mean spends summed in another order (another engine, other partitions) differ in their last
    bits, and where the Gamma-Gamma likelihood is flat those bits move the optimum (before the
    constant-spend limit model, p ranged from 1.5e6 to 6.6e7 over row orders of the same 200
    customers).  Rounded and sorted, DuckDB and Spark hand the optimiser identical input.
    """
    rounded = spend.assign(monetary_value=spend["monetary_value"].astype("float64").round(9))
    return rounded.sort_values(["frequency", "monetary_value", "n"], kind="stable", ignore_index=True)


def fit_summary(
    summary: pd.DataFrame | ir.Table,
    *,
    as_of: date,
    model: str | m.TransactionModel = "bgnbd",
    unit_days: float = DEFAULT_UNIT_DAYS,
) -> ClvFit:
    """Fit the transaction and spend models to a summary (a frame or an Ibis table of one).

    An Ibis table is collapsed to unique triples in SQL before anything is pulled into Python.
    """
    family = m.transaction_model(model).family
    trip, spend = _frames(summary)
    if trip.empty:
        raise DataError(f"no transactions before {as_of.isoformat()}: nothing to fit the CLV model on")
    triples = m.Triples.build(trip["frequency"], trip["recency"], trip["T"], trip["n"], collapse=False)
    if not np.any(triples.x > 0):
        raise ModelError(
            f"no customer made a repeat purchase before {as_of.isoformat()}: the CLV model needs repeat buyers"  # noqa: E501
        )
    tx_fit = m.fit_transactions(family, triples)
    spend = _canonical_spend(spend)
    spend_data = m.SpendData.build(spend["frequency"], spend["monetary_value"], spend["n"])
    gg_fit = m.fit_gamma_gamma(spend_data)
    spend_mean, source = m.gamma_gamma_population_spend(gg_fit.vector, spend_data, gg_fit.limit)
    return ClvFit(
        model=family,
        as_of=as_of,
        unit_days=float(unit_days),
        params=tx_fit.params,
        std_errors=tx_fit.std_errors,
        loglik=tx_fit.loglik,
        converged=tx_fit.converged,
        n_customers=tx_fit.n_customers,
        spend_params=gg_fit.params,
        spend_std_errors=gg_fit.std_errors,
        spend_loglik=gg_fit.loglik,
        spend_converged=gg_fit.converged,
        n_repeaters=gg_fit.n_customers,
        limit=tx_fit.limit,
        message=tx_fit.message
        if tx_fit.converged or not gg_fit.converged
        else f"gamma_gamma: {gg_fit.message}",
        spend_mean=spend_mean,
        spend_mean_source=source,
        spend_limit=gg_fit.limit,
    )


def group_table(ctx: StoreContext, by: str, as_of: date, segment_groups: GroupSource | None) -> ir.Table:
    """``customer_id, group`` as of ``as_of``: a customers column, or the discovered segments."""
    if by == BY_SEGMENTS:
        if segment_groups is None:
            raise ModelError("--by segments needs the workspace's discovered segments (use ws.clv)")
        return segment_groups(as_of)
    customers = ctx.table("customers")
    if by not in customers.columns or by == "customer_id":
        choices = ", ".join(c for c in customers.columns if c != "customer_id")
        raise DataError(f"--by {by!r}: not a customers column (use 'segments' or one of: {choices})")
    return customers.select("customer_id", group=customers[by].cast("string"))


def grouped_summary(summary: ir.Table, groups: ir.Table | None) -> ir.Table:
    """The summary with a ``group`` column (``(none)`` for customers outside every group)."""
    if groups is None:
        return summary.mutate(group=ibis.literal(ALL_CUSTOMERS))
    g = groups.select(customer_id=groups.customer_id, _group=groups.group)
    j = summary.left_join(g, summary.customer_id == g.customer_id)
    return j.select(*summary.columns, group=j._group.fill_null(NO_GROUP))


def fit_grouped(
    summary: ir.Table,
    *,
    as_of: date,
    by: str,
    model: str | m.TransactionModel = "bgnbd",
    unit_days: float = DEFAULT_UNIT_DAYS,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> ClvFit:
    """The pooled fit plus one fit per group of at least ``min_group_size`` customers.

    ``summary`` carries a ``group`` column (:func:`grouped_summary`).  Smaller groups, and groups
    whose own fit is impossible (no repeat buyer) or does not converge, use the pooled fit; the
    result lists every group with the reason.
    """
    if min_group_size < 1:
        raise DataError(f"--min-group-size must be at least 1, got {min_group_size}")
    pooled = fit_summary(summary.drop("group"), as_of=as_of, model=model, unit_days=unit_days)
    sizes = summary.group_by("group").aggregate(n=summary.count()).order_by("group").to_pandas()
    groups: list[GroupFit] = []
    for name, n in zip(sizes["group"], sizes["n"], strict=True):
        n = int(n)
        if n < min_group_size:
            groups.append(GroupFit(str(name), n, None, f"fewer than {min_group_size} customers"))
            continue
        part = summary.filter(summary.group == name).drop("group")
        try:
            own = fit_summary(part, as_of=as_of, model=model, unit_days=unit_days)
        except ModelError as exc:
            groups.append(GroupFit(str(name), n, None, str(exc)))
            continue
        if not (own.converged and own.spend_converged):
            groups.append(GroupFit(str(name), n, None, f"own fit did not converge ({own.message})"))
            continue
        groups.append(GroupFit(str(name), n, own))
    return replace(pooled, by=by, min_group_size=min_group_size, groups=tuple(groups))


def default_as_of(ws: StoreContext) -> date:
    """The day after the last order in the warehouse (so every order is used)."""
    last = ws.table("transactions").ordered_at.max().execute()
    if last is None or pd.isna(last):
        raise DataError("the transactions table is empty: ingest transactions before fitting CLV")
    return (
        pd.Timestamp(last).tz_convert("UTC").date() + timedelta(days=1)
        if pd.Timestamp(last).tzinfo
        else pd.Timestamp(last).date() + timedelta(days=1)
    )


def _calibration_summary(ctx: StoreContext, as_of: date | None) -> tuple[date, ir.Table]:
    tx = ctx.table("transactions")
    as_of = resolve_as_of(tx, as_of, ctx.settings.ingest.min_date)
    single_currency(tx, as_of)
    # Materialised once (table ``clv_summary``): the triples and the spend groups both read it.
    return as_of, ctx.warehouse.replace_table(
        SUMMARY_TABLE, clv_summary(tx, as_of, unit_days=DEFAULT_UNIT_DAYS)
    )


def fit_clv(
    ws: StoreContext,
    as_of: date | None = None,
    model: str | m.TransactionModel = "bgnbd",
    *,
    by: str | None = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    segment_groups: GroupSource | None = None,
) -> ClvFit:
    """Fit the transaction model and the Gamma-Gamma model on transactions before ``as_of``.

    The summary and its collapse to unique triples run in the warehouse; the fitted model is
    stored as a new :class:`ModelVersion` of kind ``"clv"`` (version incremented) and returned.
    Time is measured in weeks (``unit_days=7``), as in the papers.  With ``by`` (a customers
    column or ``"segments"``) one model is fitted per group (see :func:`fit_grouped`).
    """
    family = m.transaction_model(model).family
    as_of, summary = _calibration_summary(ws, as_of)
    if by is None:
        fit = fit_summary(summary, as_of=as_of, model=family, unit_days=DEFAULT_UNIT_DAYS)
    else:
        groups = group_table(ws, by, as_of, segment_groups)
        if by == BY_SEGMENTS:  # scoring later uses the membership the models were fitted on
            groups = ws.warehouse.replace_table(GROUPS_TABLE, groups.select("customer_id", "group"))
        grouped = ws.warehouse.replace_table(SUMMARY_TABLE, grouped_summary(summary, groups))
        fit = fit_grouped(
            grouped,
            as_of=as_of,
            by=by,
            model=family,
            unit_days=DEFAULT_UNIT_DAYS,
            min_group_size=min_group_size,
        )
    with ws.ops.session() as session:
        version = next_version(session, CLV_KIND)
        stored = ClvFit.from_dict(fit.to_dict(), version=version)
        session.add(ModelVersion(kind=CLV_KIND, version=version, as_of=as_of, params=stored.to_dict()))
    return stored


def latest_clv_fit(ws: StoreContext) -> ClvFit | None:
    """The most recently stored CLV fit, or ``None`` if no model was fitted yet."""
    with ws.ops.session() as session:
        row = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.kind == CLV_KIND)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return ClvFit.from_dict(dict(row.params), version=row.version)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def score_triples(
    fit: ClvFit,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    *,
    horizon_months: int,
    annual_discount_rate: float,
) -> dict[str, np.ndarray]:
    """Vectorised per-triple scores: p_alive, expected purchases in 90/365 days, discounted purchases."""
    model = fit.transaction_model
    p = fit.vector
    days = fit.unit_days
    return {
        "p_alive": model.p_alive(p, x, t_x, T),
        "expected_purchases_90d": model.conditional_expected(p, 90.0 / days, x, t_x, T),
        "expected_purchases_365d": model.conditional_expected(p, 365.0 / days, x, t_x, T),
        "discounted_purchases": m.discounted_expected_purchases(
            model,
            p,
            x,
            t_x,
            T,
            months=horizon_months,
            unit_days=days,
            annual_discount_rate=annual_discount_rate,
        ),
    }


def _group_triples(summary: ir.Table) -> pd.DataFrame:
    t = summary.group_by(["group", "frequency", "recency", "T"]).aggregate(n=summary.count())
    return t.order_by(["group", "frequency", "recency", "T"]).to_pandas()


def clv_features(
    ws: StoreContext, as_of: date, fit: ClvFit, *, segment_groups: GroupSource | None = None
) -> ir.Table:
    """Per-customer CLV columns as of ``as_of`` using ``fit`` (each customer's group model).

    A ``--by segments`` fit scores with the membership it was fitted on (table ``clv_groups``);
    a column fit reads the column now; customers outside every fitted group use the pooled fit.

    Columns: ``customer_id, p_alive, expected_purchases_90d, expected_purchases_365d,
    expected_avg_spend, clv, value_tier`` for every customer with a transaction before
    ``as_of``.  Triple-level scores are computed in numpy on the distinct (group, triple) pairs
    and joined back in SQL; expected spend (the one Gamma-Gamma formula,
    ``clv_models.gamma_gamma_conditional_spend``, for repeaters; the fit's non-repeater spend
    otherwise), CLV (margin and discount rate from
    the settings; the horizon is ``clv.horizon_months``, 12 by default) and the tiers (top 1 %,
    10 %, 50 % by CLV) are SQL.
    """
    cfg = ws.settings.clv
    summary = clv_summary(ws.table("transactions"), as_of, unit_days=fit.unit_days)
    if fit.by == BY_SEGMENTS and ws.warehouse.has_table(GROUPS_TABLE):
        groups: ir.Table | None = ws.table(GROUPS_TABLE)
    else:
        groups = None if fit.by is None else group_table(ws, fit.by, as_of, segment_groups)
    summary = ws.warehouse.replace_table(SUMMARY_TABLE, grouped_summary(summary, groups))
    trip = _group_triples(summary)
    if trip.empty:
        raise DataError(f"no transactions before {as_of.isoformat()}: nothing to score")
    parts, params = [], []
    for name, rows in trip.groupby("group", sort=True):
        own = fit.group_model(str(name))
        x = rows["frequency"].to_numpy(np.float64)
        tx = rows["recency"].to_numpy(np.float64)
        T = rows["T"].to_numpy(np.float64)
        with np.errstate(all="ignore"):
            scores = score_triples(
                own,
                x,
                tx,
                T,
                horizon_months=cfg.horizon_months,
                annual_discount_rate=cfg.annual_discount_rate,
            )
        broken = {k: int((~np.isfinite(v)).sum()) for k, v in scores.items() if not np.isfinite(v).all()}
        if broken:
            # A silent zero would put these customers at the bottom of every value tier.
            raise ModelError(
                f"CLV scoring produced non-finite values ({broken}) with parameters {own.params}"
            )
        parts.append(
            pd.DataFrame(
                {
                    "group": rows["group"],
                    "frequency": rows["frequency"].astype("int64"),
                    "recency": tx,
                    "T": T,
                }
                | scores
            )
        )
        q, scale, eps, w = own.spend_mean_form
        params.append(
            {
                "group": str(name), "_q": q, "_scale": scale, "_eps": eps, "_w": w,
                "_fallback": own.non_repeater_spend,
            }
        )  # fmt: skip
    scored_t = ibis.memtable(pd.concat(parts, ignore_index=True))
    spend_t = ibis.memtable(pd.DataFrame(params))
    j = summary.join(scored_t, ["group", "frequency", "recency", "T"]).join(spend_t, "group")
    individual = m.gamma_gamma_conditional_spend(
        (j._q, j._scale, j._eps, j._w), j.frequency.cast("float64"), j.monetary_value
    )
    spend = ibis.cases((j.frequency > 0, individual), else_=j._fallback)
    base = j.select(
        j.customer_id,
        j.p_alive,
        j.expected_purchases_90d,
        j.expected_purchases_365d,
        expected_avg_spend=spend,
        clv=cfg.margin * spend * j.discounted_purchases,
    )
    rank = ibis.row_number().over(order_by=[ibis.desc(base.clv), base.customer_id])
    total = base.count().as_scalar()
    ranked = base.mutate(_share=(rank + 1).cast("float64") / total.cast("float64"))
    tier = ibis.cases(
        (ranked._share <= 0.01, "top_1"),
        (ranked._share <= 0.10, "top_10"),
        (ranked._share <= 0.50, "top_50"),
        else_="rest",
    )
    return ranked.mutate(value_tier=tier).select("customer_id", *CLV_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Backtest: calibration fit, holdout repeat transactions, pooled and per group
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BacktestResult:
    """Holdout repeat transactions against the predictions of a calibration-period fit."""

    calibration_end: date
    holdout_end: date
    by: str | None
    fit: ClvFit
    groups: list[dict[str, Any]]
    total: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
            "by": self.by,
            "model": self.fit.model,
            "groups": self.groups,
            "total": self.total,
        }


def _predicted_by_group(
    fit: ClvFit, summary: ir.Table, horizon: float, *, pooled_only: bool = False
) -> pd.DataFrame:
    """Expected repeat transactions in the next ``horizon`` units, summed per group."""
    trip = _group_triples(summary)
    out = []
    for name, rows in trip.groupby("group", sort=True):
        model_fit = fit if pooled_only else fit.group_model(str(name))
        model = model_fit.transaction_model
        with np.errstate(all="ignore"):
            e = model.conditional_expected(
                model_fit.vector,
                horizon,
                rows["frequency"].to_numpy(np.float64),
                rows["recency"].to_numpy(np.float64),
                rows["T"].to_numpy(np.float64),
            )
        out.append(
            {"group": str(name), "predicted": float(np.add.reduce(e * rows["n"].to_numpy(np.float64)))}
        )
    return pd.DataFrame(out)


def backtest(
    ctx: StoreContext,
    calibration_end: date,
    holdout_end: date | None = None,
    *,
    by: str | None = None,
    model: str | m.TransactionModel = "bgnbd",
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    segment_groups: GroupSource | None = None,
) -> BacktestResult:
    """Fit on the days up to ``calibration_end`` and count repeat transactions in the holdout.

    The holdout runs from the day after ``calibration_end`` to ``holdout_end`` (inclusive;
    default the last order day).  Only customers acquired in the calibration period count, and
    group membership is taken as of the calibration end (``--by segments`` reads the discovered
    segments materialised on or before it), so nothing of the holdout reaches the fit or the
    grouping.  Nothing is stored.
    """
    family = m.transaction_model(model).family
    tx = ctx.table("transactions")
    as_of = calibration_end + timedelta(days=1)
    if holdout_end is None:
        holdout_end = default_as_of(ctx) - timedelta(days=1)
    if holdout_end <= calibration_end:
        raise DataError(
            f"--holdout-end {holdout_end.isoformat()} must be after --calibration-end {calibration_end.isoformat()}"  # noqa: E501
        )
    as_of = resolve_as_of(tx, as_of, ctx.settings.ingest.min_date)
    single_currency(tx, holdout_end + timedelta(days=1))
    groups = None if by is None else group_table(ctx, by, as_of, segment_groups)
    summary = ctx.warehouse.replace_table(
        SUMMARY_TABLE, grouped_summary(clv_summary(tx, as_of, unit_days=DEFAULT_UNIT_DAYS), groups)
    )
    if by is None:
        fit = fit_summary(summary.drop("group"), as_of=as_of, model=family, unit_days=DEFAULT_UNIT_DAYS)
    else:
        fit = fit_grouped(
            summary,
            as_of=as_of,
            by=by,
            model=family,
            unit_days=DEFAULT_UNIT_DAYS,
            min_group_size=min_group_size,
        )
    horizon = (holdout_end - calibration_end).days / DEFAULT_UNIT_DAYS
    days = purchase_days(tx, holdout_end + timedelta(days=1), start=as_of)
    held = days.group_by("customer_id").aggregate(x_star=days.count())
    j = summary.left_join(held, summary.customer_id == held.customer_id)
    actual = (
        j.group_by(j.group)
        .aggregate(customers=j.count(), actual=j.x_star.fill_null(0).sum())
        .order_by("group")
        .to_pandas()
    )
    pred = _predicted_by_group(fit, summary, horizon)
    pooled = _predicted_by_group(fit, summary, horizon, pooled_only=True).rename(
        columns={"predicted": "predicted_pooled"}
    )
    table = actual.merge(pred, on="group").merge(pooled, on="group")
    uses = {g.group: "own" if g.fit is not None else "pooled" for g in fit.groups}
    rows = [
        {
            "group": str(r.group),
            "customers": int(r.customers),
            "actual": int(r.actual),
            "predicted": float(r.predicted),
            "predicted_pooled": float(r.predicted_pooled),
            "model": uses.get(str(r.group), "pooled"),
        }
        for r in table.itertuples()
    ]
    total = {
        "customers": int(table["customers"].sum()),
        "actual": int(table["actual"].sum()),
        "predicted": float(table["predicted"].sum()),
        "predicted_pooled": float(table["predicted_pooled"].sum()),
    }
    return BacktestResult(calibration_end, holdout_end, by, fit, rows, total)
