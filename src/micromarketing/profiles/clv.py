"""Customer lifetime value: summaries in SQL, fitted BTYD models in the workspace, per-customer scores.

This module owns the bridge between the warehouse and the models of
:mod:`micromarketing.profiles.clv_models`: the per-customer summary (frequency, recency, T,
monetary value) computed in SQL through Ibis, fitting on unique ``(frequency, recency, T)``
triples, versioned storage of fitted models (:class:`~micromarketing.store.models.ModelVersion`
with kind ``"clv"``), and scoring (P(alive), expected purchases, expected spend, discounted
12-month CLV and value tiers) joined back to customers.

The models are written here rather than taken from a library: ``lifetimes`` is archived and
breaks with current NumPy/pandas, and ``pymc-marketing`` is Bayesian and slow at a million
customers; see :mod:`micromarketing.profiles.clv_models` and the tests that compare against both.

Conventions (those of the papers): purchases on the same day are one transaction; ``frequency``
is distinct purchase days minus one; ``recency`` is the time from the first to the last purchase
day; ``T`` is the time from the first purchase day to the last observed day, which is the day
before ``as_of`` (``as_of`` is exclusive: data *before* it are used).  ``monetary_value`` is the
mean of the repeat-purchase day totals (NULL for customers without repeats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

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
    "clv_12m",
    "value_tier",
)
DEFAULT_UNIT_DAYS = 7.0
VALUE_TIERS = ("top_1", "top_10", "top_50", "rest")
SUMMARY_TABLE = "clv_summary"  # the last summary fitted or scored, kept in the warehouse


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
@dataclass(frozen=True)
class ClvFit:
    """A fitted transaction model plus Gamma-Gamma spend model, as stored in the workspace."""

    model: Literal["bgnbd", "paretonbd"]
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

    @property
    def vector(self) -> np.ndarray:
        """The transaction-model parameters in the model's canonical order."""
        return np.array([self.params[k] for k in m.PARAM_NAMES[self.model]])

    @property
    def spend_vector(self) -> np.ndarray:
        return np.array([self.spend_params[k] for k in m.PARAM_NAMES["gamma_gamma"]])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what the CLI prints and ``ModelVersion.params`` stores)."""
        return {
            "model": self.model,
            "as_of": self.as_of.isoformat(),
            "version": self.version,
            "unit_days": self.unit_days,
            "params": self.params,
            "std_errors": self.std_errors,
            "loglik": self.loglik,
            "converged": self.converged,
            "n_customers": self.n_customers,
            "gamma_gamma": {
                "params": self.spend_params,
                "std_errors": self.spend_std_errors,
                "loglik": self.spend_loglik,
                "converged": self.spend_converged,
                "n_customers": self.n_repeaters,
            },
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, version: int | None = None) -> ClvFit:
        gg = data["gamma_gamma"]
        known = {
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
        }
        return cls(
            model=data["model"],
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
            extra={k: v for k, v in data.items() if k not in known},
        )


def fit_summary(
    summary: pd.DataFrame | ir.Table,
    *,
    as_of: date,
    model: Literal["bgnbd", "paretonbd"] = "bgnbd",
    unit_days: float = DEFAULT_UNIT_DAYS,
) -> ClvFit:
    """Fit the transaction and spend models to a summary (a frame or an Ibis table of one).

    An Ibis table is collapsed to unique triples in SQL before anything is pulled into Python.
    """
    if isinstance(summary, ir.Table):
        trip = summary_triples(summary).to_pandas()
        repeaters = summary.filter(summary.frequency > 0)
        spend = repeaters.group_by(["frequency", "monetary_value"]).aggregate(n=repeaters.count()).to_pandas()
    else:
        trip = (
            summary.groupby(["frequency", "recency", "T"], as_index=False)
            .size()
            .rename(columns={"size": "n"})
        )
        rep = summary[summary.frequency > 0]
        spend = (
            rep.groupby(["frequency", "monetary_value"], as_index=False).size().rename(columns={"size": "n"})
        )
    if trip.empty:
        raise DataError(f"no transactions before {as_of.isoformat()}: nothing to fit the CLV model on")
    triples = m.Triples.build(trip["frequency"], trip["recency"], trip["T"], trip["n"], collapse=False)
    if not np.any(triples.x > 0):
        raise ModelError(
            f"no customer made a repeat purchase before {as_of.isoformat()}: the CLV model needs repeat buyers"  # noqa: E501
        )
    tx_fit = m.fit_transactions(model, triples)
    spend_data = m.SpendData.build(spend["frequency"], spend["monetary_value"], spend["n"])
    gg_fit = m.fit_gamma_gamma(spend_data)
    return ClvFit(
        model=model,
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
    )


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


def fit_clv(
    ws: StoreContext, as_of: date | None = None, model: Literal["bgnbd", "paretonbd"] = "bgnbd"
) -> ClvFit:
    """Fit the transaction model and the Gamma-Gamma model on transactions before ``as_of``.

    The summary and its collapse to unique triples run in the warehouse; the fitted model is
    stored as a new :class:`ModelVersion` of kind ``"clv"`` (version incremented) and returned.
    Time is measured in weeks (``unit_days=7``), as in the papers.
    """
    if model not in ("bgnbd", "paretonbd"):
        raise ModelError(f"unknown CLV model {model!r} (use 'bgnbd' or 'paretonbd')")
    tx = ws.table("transactions")
    as_of = resolve_as_of(tx, as_of, ws.settings.ingest.min_date)
    single_currency(tx, as_of)
    # Materialised once (table ``clv_summary``): the triples and the spend groups both read it.
    summary = ws.warehouse.replace_table(SUMMARY_TABLE, clv_summary(tx, as_of, unit_days=DEFAULT_UNIT_DAYS))
    fit = fit_summary(summary, as_of=as_of, model=model, unit_days=DEFAULT_UNIT_DAYS)
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
    p = fit.vector
    days = fit.unit_days
    return {
        "p_alive": m.p_alive(fit.model, p, x, t_x, T),
        "expected_purchases_90d": m.conditional_expected(fit.model, p, 90.0 / days, x, t_x, T),
        "expected_purchases_365d": m.conditional_expected(fit.model, p, 365.0 / days, x, t_x, T),
        "discounted_purchases": m.discounted_expected_purchases(
            fit.model,
            p,
            x,
            t_x,
            T,
            months=horizon_months,
            unit_days=days,
            annual_discount_rate=annual_discount_rate,
        ),
    }


def clv_features(ws: StoreContext, as_of: date, fit: ClvFit) -> ir.Table:
    """Per-customer CLV columns as of ``as_of`` using ``fit``.

    Columns: ``customer_id, p_alive, expected_purchases_90d, expected_purchases_365d,
    expected_avg_spend, clv_12m, value_tier`` for every customer with a transaction before
    ``as_of``.  Triple-level scores are computed in numpy on the distinct triples and joined back
    in SQL; expected spend, CLV (margin and discount rate from the settings; the horizon is
    ``clv.horizon_months``, 12 by default) and the tiers (top 1 %, 10 %, 50 % by CLV) are SQL.
    """
    cfg = ws.settings.clv
    summary = ws.warehouse.replace_table(
        SUMMARY_TABLE, clv_summary(ws.table("transactions"), as_of, unit_days=fit.unit_days)
    )
    trip = summary_triples(summary).to_pandas()
    if trip.empty:
        raise DataError(f"no transactions before {as_of.isoformat()}: nothing to score")
    x = trip["frequency"].to_numpy(np.float64)
    tx = trip["recency"].to_numpy(np.float64)
    T = trip["T"].to_numpy(np.float64)
    with np.errstate(all="ignore"):
        scores = score_triples(
            fit, x, tx, T, horizon_months=cfg.horizon_months, annual_discount_rate=cfg.annual_discount_rate
        )
    broken = {k: int((~np.isfinite(v)).sum()) for k, v in scores.items() if not np.isfinite(v).all()}
    if broken:
        # A silent zero would put these customers at the bottom of every value tier.
        raise ModelError(f"CLV scoring produced non-finite values ({broken}) with parameters {fit.params}")
    scored = pd.DataFrame(
        {
            "frequency": trip["frequency"].astype("int64"),
            "recency": tx,
            "T": T,
            **scores,
        }
    )
    scored_t = ibis.memtable(scored)
    j = summary.join(scored_t, ["frequency", "recency", "T"])
    p, q, g = fit.spend_vector
    population_spend = p * g / (q - 1.0) if q > 1.0 else None
    freq = j.frequency.cast("float64")
    individual = (p * (g + freq * j.monetary_value)) / (p * freq + q - 1.0)
    if population_spend is None:
        # q <= 1: the population mean spend is infinite; fall back to the observed mean for non-repeaters.
        fallback = j.monetary_value.fillna(0.0)
        spend = ibis.cases((j.frequency > 0, individual), else_=fallback)
    else:
        spend = ibis.cases((j.frequency > 0, individual), else_=ibis.literal(float(population_spend)))
    base = j.select(
        j.customer_id,
        j.p_alive,
        j.expected_purchases_90d,
        j.expected_purchases_365d,
        expected_avg_spend=spend,
        clv_12m=cfg.margin * spend * j.discounted_purchases,
    )
    rank = ibis.row_number().over(order_by=[ibis.desc(base.clv_12m), base.customer_id])
    total = base.count().as_scalar()
    ranked = base.mutate(_share=(rank + 1).cast("float64") / total.cast("float64"))
    tier = ibis.cases(
        (ranked._share <= 0.01, "top_1"),
        (ranked._share <= 0.10, "top_10"),
        (ranked._share <= 0.50, "top_50"),
        else_="rest",
    )
    return ranked.mutate(value_tier=tier).select("customer_id", *CLV_COLUMNS)
