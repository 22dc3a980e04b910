"""Offers and the next best offer: storage, eligibility, conversion propensity and expected margin.

What it owns
------------
* Offers (:class:`~micromarketing.store.models.Offer`): ``discount`` (``value`` = percent off),
  ``free_shipping``, ``bundle`` and ``loyalty_points`` (``value`` = shipping fee / bundle saving /
  points, shown to the customer), ``cost`` = what one redemption costs us on top (currency), an
  eligibility rule in the segment language (empty = everyone) and a validity window.
* :func:`eligible_customers` — the members of an offer's rule, through :mod:`micromarketing.segments`.
* :func:`next_best_offer` — for each customer, among the offers valid on the day and whose rule
  they satisfy, the one with the highest **expected margin**::

      expected_margin = p × (order_value × margin_rate − redemption_cost)
      redemption_cost = cost + order_value × value / 100   (discount)
                      = cost                                (other kinds)

  ``order_value`` is the customer's average order value (the base's mean for customers without
  orders) and ``margin_rate`` the workspace's ``clv.margin``.  ``p`` is the conversion propensity.
* Propensity: a logistic regression on past campaign outcomes (:data:`OUTCOMES_TABLE`, written by
  campaigns/measure: ``customer_id, offer, sent_at, converted``) when at least
  :data:`MIN_OUTCOMES` outcomes with both results exist (fitted by :func:`fit_propensity`, stored as
  ``ModelVersion(kind="offer_propensity")``), otherwise the documented prior :func:`prior_propensity`.

The prior
---------
``logit p = logit(BASE_RATE[kind]) + 0.25 (r_score − 3) + 0.15 (f_score − 3) + 0.03 × percent off``
with ``BASE_RATE = discount 5 %, free_shipping 4 %, bundle 3 %, loyalty_points 3.5 %`` (typical
e-mail offer conversion rates), and customers without orders scored as ``r = f = 1``: recent and
frequent buyers convert more, and a deeper discount converts more.  It only needs to rank offers
sensibly until real outcomes exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from sqlalchemy import select

from micromarketing.errors import ConflictError, DataError, InvalidInputError, ModelError, NotFoundError
from micromarketing.store.context import StoreContext
from micromarketing.store.models import ModelVersion, Offer
from micromarketing.store.versions import next_version

KINDS = ("discount", "free_shipping", "bundle", "loyalty_points")
BASE_RATE = {"discount": 0.05, "free_shipping": 0.04, "bundle": 0.03, "loyalty_points": 0.035}
PRIOR_R, PRIOR_F, PRIOR_DISCOUNT = 0.25, 0.15, 0.03
OUTCOMES_TABLE = "offer_outcomes"
MIN_OUTCOMES = 200
PROPENSITY_KIND = "offer_propensity"
FEATURES = (
    "r_score",
    "f_score",
    "m_score",
    "log_frequency",
    "log_aov",
    "percent_off",
    *(f"kind_{k}" for k in KINDS),
)


@dataclass(frozen=True)
class OfferInfo:
    """A stored offer."""

    name: str
    kind: str
    value: float
    cost: float
    rule: str
    valid_from: date | None
    valid_to: date | None
    headline: str
    details: dict[str, Any]

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


def _headline(kind: str, value: float, currency: str) -> str:
    if kind == "discount":
        return f"{value:g}% off your next order"
    if kind == "free_shipping":
        return "Free shipping on your next order"
    if kind == "bundle":
        return f"Save {value:g} {currency} with a bundle"
    return f"{value:g} bonus loyalty points"


def add_offer(
    ctx: StoreContext,
    name: str,
    *,
    kind: str,
    value: float,
    cost: float = 0.0,
    rule: str = "",
    valid_from: date | None = None,
    valid_to: date | None = None,
    headline: str | None = None,
    replace: bool = False,
) -> OfferInfo:
    """Store an offer after checking its kind, amounts, dates and rule (compiled, not run)."""
    if kind not in KINDS:
        raise InvalidInputError(f"offer {name!r}: unknown kind {kind!r} (use {', '.join(KINDS)})")
    if value < 0 or cost < 0:
        raise InvalidInputError(f"offer {name!r}: value and cost must be non-negative")
    if kind == "discount" and value > 100:
        raise InvalidInputError(f"offer {name!r}: a discount is a percentage (0–100), got {value:g}")
    if valid_from and valid_to and valid_to < valid_from:
        raise InvalidInputError(f"offer {name!r}: valid_to {valid_to} is before valid_from {valid_from}")
    if rule.strip():
        from micromarketing.segments import Segments

        Segments(ctx).compile(rule)  # raises RuleError with line and column
    details = {"headline": headline or _headline(kind, value, ctx.settings.currency)}
    with ctx.ops.session() as s:
        row = s.scalar(select(Offer).where(Offer.name == name))
        if row is not None and not replace:
            raise ConflictError(f"offer {name!r} already exists; use --replace to change it")
        if row is None:
            row = Offer(name=name, kind=kind, value=value, cost=cost)
            s.add(row)
        row.kind, row.value, row.cost, row.rule = kind, float(value), float(cost), rule
        row.valid_from, row.valid_to, row.details = valid_from, valid_to, details
    ctx.audit("offer.add", name, {"kind": kind, "value": value, "cost": cost, "rule": rule})
    return get_offer(ctx, name)


def _info(row: Offer) -> OfferInfo:
    details = dict(row.details or {})
    return OfferInfo(
        row.name,
        row.kind,
        float(row.value),
        float(row.cost),
        row.rule or "",
        row.valid_from,
        row.valid_to,
        str(details.get("headline") or _headline(row.kind, row.value, "")),
        details,
    )


def get_offer(ctx: StoreContext, name: str) -> OfferInfo:
    """The stored offer ``name`` (:class:`NotFoundError` if absent)."""
    with ctx.ops.session() as s:
        row = s.scalar(select(Offer).where(Offer.name == name))
        if row is None:
            raise NotFoundError(f"no offer named {name!r}")
        return _info(row)


def list_offers(ctx: StoreContext) -> list[OfferInfo]:
    """Every stored offer, by name."""
    with ctx.ops.session() as s:
        return [_info(r) for r in s.scalars(select(Offer).order_by(Offer.name))]


def offer_contexts(ctx: StoreContext) -> dict[str, dict[str, Any]]:
    """What templates see as ``offer``: name, kind, value, headline, valid_from, valid_to."""
    return {
        o.name: {
            "name": o.name,
            "kind": o.kind,
            "value": o.value,
            "headline": o.headline,
            "valid_from": o.valid_from,
            "valid_to": o.valid_to,
        }
        for o in list_offers(ctx)
    }


def eligible_customers(ctx: StoreContext, rule: str, as_of: date | None = None) -> ir.Table:
    """``customer_id`` of every customer the segment-language ``rule`` selects (empty rule: all)."""
    if not rule.strip():
        base = ctx.table("profiles") if ctx.warehouse.has_table("profiles") else ctx.table("customers")
        return base.select("customer_id")
    from micromarketing.segments import Segments

    return Segments(ctx).compile(rule, as_of).members()


# ---------------------------------------------------------------------------------------------
# propensity
# ---------------------------------------------------------------------------------------------
def _features(profile: pd.DataFrame, offer_kind: str, offer_value: float) -> np.ndarray:
    """The model's feature matrix for customers × one offer."""
    n = len(profile)
    r = profile["r_score"].fillna(1).to_numpy(dtype=float)
    f = profile["f_score"].fillna(1).to_numpy(dtype=float)
    m = profile["m_score"].fillna(1).to_numpy(dtype=float)
    freq = np.log1p(profile["frequency"].fillna(0).to_numpy(dtype=float))
    aov = np.log1p(profile["avg_order_value"].fillna(0).to_numpy(dtype=float))
    pct = np.full(n, offer_value if offer_kind == "discount" else 0.0)
    kinds = [np.full(n, 1.0 if offer_kind == k else 0.0) for k in KINDS]
    return np.column_stack([r, f, m, freq, aov, pct, *kinds])


def prior_propensity(profile: pd.DataFrame, offer: OfferInfo) -> np.ndarray:
    """The documented prior (see the module docstring)."""
    base = BASE_RATE[offer.kind]
    r = profile["r_score"].fillna(1).to_numpy(dtype=float)
    f = profile["f_score"].fillna(1).to_numpy(dtype=float)
    pct = offer.value if offer.kind == "discount" else 0.0
    logit = math.log(base / (1 - base)) + PRIOR_R * (r - 3) + PRIOR_F * (f - 3) + PRIOR_DISCOUNT * pct
    return 1.0 / (1.0 + np.exp(-logit))


@dataclass
class PropensityModel:
    """Logistic-regression coefficients over :data:`FEATURES` (stored in ModelVersion params)."""

    version: int
    intercept: float
    coef: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def predict(self, profile: pd.DataFrame, offer: OfferInfo) -> np.ndarray:
        x = (_features(profile, offer.kind, offer.value) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(self.intercept + x @ self.coef)))


def fit_propensity(ctx: StoreContext) -> PropensityModel:
    """Fit conversion propensity on :data:`OUTCOMES_TABLE` joined to profiles and offers; store it.

    Raises :class:`ModelError` with fewer than :data:`MIN_OUTCOMES` outcomes or a single class.
    """
    from sklearn.linear_model import LogisticRegression

    if not ctx.warehouse.has_table(OUTCOMES_TABLE):
        raise ModelError(f"no campaign outcomes yet (table {OUTCOMES_TABLE!r}); the prior is used")
    outcomes = ctx.table(OUTCOMES_TABLE).select("customer_id", "offer", "converted").to_pandas()
    offers = {o.name: o for o in list_offers(ctx)}
    outcomes = outcomes[outcomes["offer"].isin(offers)]
    if len(outcomes) < MIN_OUTCOMES or outcomes["converted"].nunique() < 2:
        raise ModelError(
            f"{len(outcomes)} usable outcomes (need {MIN_OUTCOMES} with conversions and "
            "non-conversions); the prior is used"
        )
    profile = _profile_frame(ctx, outcomes["customer_id"].unique().tolist())
    data = outcomes.merge(profile, on="customer_id", how="left")
    xs = []
    for name, group in data.groupby("offer", sort=True):
        o = offers[name]
        xs.append((group.index.to_numpy(), _features(group, o.kind, o.value)))
    x = np.zeros((len(data), len(FEATURES)))
    for idx, block in xs:
        x[idx] = block
    y = data["converted"].astype(bool).to_numpy()
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    with ctx.ops.session() as s:
        version = next_version(s, PROPENSITY_KIND)
        s.add(
            ModelVersion(
                kind=PROPENSITY_KIND,
                version=version,
                as_of=datetime.now(UTC).date(),
                params={
                    "features": list(FEATURES),
                    "intercept": float(lr.intercept_[0]),
                    "coef": lr.coef_[0].tolist(),
                    "mean": mean.tolist(),
                    "scale": scale.tolist(),
                    "outcomes": int(len(data)),
                    "conversion_rate": float(y.mean()),
                },
            )
        )
    return PropensityModel(version, float(lr.intercept_[0]), lr.coef_[0], mean, scale)


def load_propensity(ctx: StoreContext) -> PropensityModel | None:
    """The latest fitted propensity model, or ``None`` (the prior is used)."""
    with ctx.ops.session() as s:
        row = s.scalars(
            select(ModelVersion)
            .where(ModelVersion.kind == PROPENSITY_KIND)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        p = dict(row.params)
        return PropensityModel(
            row.version, p["intercept"], np.array(p["coef"]), np.array(p["mean"]), np.array(p["scale"])
        )


# ---------------------------------------------------------------------------------------------
# next best offer
# ---------------------------------------------------------------------------------------------
def _profile_frame(ctx: StoreContext, ids: Sequence[str]) -> pd.DataFrame:
    cols = ["customer_id", "r_score", "f_score", "m_score", "frequency", "avg_order_value"]
    frame = pd.DataFrame({"customer_id": list(ids)})
    if not ctx.warehouse.has_table("profiles"):
        raise DataError("no profiles yet: run `micromarketing profile` before choosing offers")
    p = ctx.table("profiles")
    want = ibis.memtable({"customer_id": list(ids)}, schema={"customer_id": "string"})
    got = p.join(want, "customer_id").select(*cols).to_pandas()
    return frame.merge(got, on="customer_id", how="left")


def next_best_offer(
    ctx: StoreContext,
    customer_ids: Sequence[str],
    *,
    on: date | None = None,
    margin_rate: float | None = None,
) -> pd.DataFrame:
    """The offer with the highest expected margin per customer among those valid ``on`` (today).

    Returns DataFrame(customer_id, offer, expected_margin, propensity, source), one row per
    requested customer in the given order; ``offer`` is ``None`` when no offer is eligible.
    ``source`` says whether the propensity came from the fitted model or the prior.
    """
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    on = on or datetime.now(UTC).date()
    rate = float(margin_rate if margin_rate is not None else ctx.settings.clv.margin)
    offers = [o for o in list_offers(ctx) if o.valid_on(on)]
    out = pd.DataFrame(
        {
            "customer_id": ids,
            "offer": pd.Series([None] * len(ids), dtype=object),
            "expected_margin": np.nan,
            "propensity": np.nan,
            "source": pd.Series([None] * len(ids), dtype=object),
        }
    )
    if not ids or not offers:
        return out
    profile = _profile_frame(ctx, ids)
    base_aov = ctx.table("profiles").avg_order_value.mean().execute()
    base_aov = float(base_aov) if base_aov is not None and base_aov == base_aov else 0.0
    aov = profile["avg_order_value"].fillna(base_aov).to_numpy(dtype=float)
    model = load_propensity(ctx)
    want = ibis.memtable({"customer_id": ids}, schema={"customer_id": "string"})
    pos = {c: i for i, c in enumerate(ids)}
    best = np.full(len(ids), -np.inf)
    for o in offers:
        members = eligible_customers(ctx, o.rule)
        members = members.join(want, "customer_id").select("customer_id").to_pandas()["customer_id"]
        idx = np.array(sorted(pos[c] for c in set(members)), dtype=np.int64)
        if len(idx) == 0:
            continue
        p = model.predict(profile.iloc[idx], o) if model else prior_propensity(profile.iloc[idx], o)
        redemption = o.cost + (aov[idx] * o.value / 100.0 if o.kind == "discount" else 0.0)
        margin = p * (aov[idx] * rate - redemption)
        better = margin > best[idx]
        take = idx[better]
        best[take] = margin[better]
        out.loc[take, "offer"] = o.name
        out.loc[take, "expected_margin"] = margin[better]
        out.loc[take, "propensity"] = p[better]
        out.loc[take, "source"] = f"model v{model.version}" if model else "prior"
    return out
