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
  :data:`MIN_OUTCOMES` outcomes and :data:`MIN_CONVERSIONS` of each result exist (fitted by
  :func:`fit_propensity` on profiles as of each send, L2 strength by cross-validation, calibration
  reported; stored as ``ModelVersion(kind="offer_propensity")`` dated by its data), otherwise the
  documented prior :func:`prior_propensity`.

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
from micromarketing.profiles.build import profiles_as_of
from micromarketing.store.context import StoreContext
from micromarketing.store.models import ModelVersion, Offer
from micromarketing.store.versions import next_version

KINDS = ("discount", "free_shipping", "bundle", "loyalty_points")
BASE_RATE = {"discount": 0.05, "free_shipping": 0.04, "bundle": 0.03, "loyalty_points": 0.035}
PRIOR_R, PRIOR_F, PRIOR_DISCOUNT = 0.25, 0.15, 0.03
OUTCOMES_TABLE = "offer_outcomes"
MIN_OUTCOMES = 200
MIN_CONVERSIONS = 25  # and as many non-conversions: fewer cannot support a cross-validated fit
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
def _design(profile: pd.DataFrame, offer_kind: str, offer_value: float) -> dict[str, np.ndarray]:
    """Every candidate feature column for customers × one offer (see :data:`FEATURES`)."""
    n = len(profile)
    columns = {
        "r_score": profile["r_score"].fillna(1).to_numpy(dtype=float),
        "f_score": profile["f_score"].fillna(1).to_numpy(dtype=float),
        "m_score": profile["m_score"].fillna(1).to_numpy(dtype=float),
        "log_frequency": np.log1p(profile["frequency"].fillna(0).to_numpy(dtype=float)),
        "log_aov": np.log1p(profile["avg_order_value"].fillna(0).to_numpy(dtype=float)),
        "percent_off": np.full(n, offer_value if offer_kind == "discount" else 0.0),
    }
    for k in KINDS:
        columns[f"kind_{k}"] = np.full(n, 1.0 if offer_kind == k else 0.0)
    return columns


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
    """Logistic-regression coefficients over the identifiable ``columns`` (stored in ModelVersion
    params), with the cross-validated calibration of the fit."""

    version: int
    columns: list[str]
    intercept: float
    coef: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    as_of: date | None = None
    calibration: dict[str, Any] | None = None

    def predict(self, profile: pd.DataFrame, offer: OfferInfo) -> np.ndarray:
        design = _design(profile, offer.kind, offer.value)
        x = (np.column_stack([design[c] for c in self.columns]) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(self.intercept + x @ self.coef)))


def _outcome_features(ctx: StoreContext, outcomes: pd.DataFrame) -> pd.DataFrame:
    """``outcomes`` joined to each customer's profile as of the day the offer was sent.

    Today's profile would leak the future into the features (an order *caused* by the offer
    raises its own recipient's frequency), so each send date gets its own profile."""
    cols = ["customer_id", "r_score", "f_score", "m_score", "frequency", "avg_order_value"]
    parts = []
    for day, group in outcomes.groupby("sent_day", sort=True):
        ids = group["customer_id"].unique().tolist()
        want = ibis.memtable({"customer_id": ids}, schema={"customer_id": "string"})
        profile = profiles_as_of(ctx, day).join(want, "customer_id").select(*cols).to_pandas()
        parts.append(group.merge(profile, on="customer_id", how="left"))
    return pd.concat(parts, ignore_index=True)


def _reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    """Mean predicted against observed conversion in equal-width bins of the prediction."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows: list[dict[str, float | int]] = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "count": int(mask.sum()),
                    "predicted": float(p[mask].mean()),
                    "observed": float(y[mask].mean()),
                }
            )
    return rows


def fit_propensity(ctx: StoreContext) -> PropensityModel:
    """Fit conversion propensity on :data:`OUTCOMES_TABLE` and store it as a model version.

    Features are each recipient's profile *as of the send* (no leakage); one offer kind is the
    reference level (the kind dummies with the intercept would be collinear) and constant
    columns are dropped, so the design is identifiable; the L2 strength is chosen by 5-fold
    cross-validated log loss; the calibration (Brier score, reliability bins) is measured on
    cross-validated predictions.  The version is dated by its data (the last send), not today.
    Raises :class:`ModelError` with fewer than :data:`MIN_OUTCOMES` outcomes or fewer than
    :data:`MIN_CONVERSIONS` conversions or non-conversions.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if not ctx.warehouse.has_table(OUTCOMES_TABLE):
        raise ModelError(f"no campaign outcomes yet (table {OUTCOMES_TABLE!r}); the prior is used")
    outcomes = ctx.table(OUTCOMES_TABLE).select("customer_id", "offer", "sent_at", "converted").to_pandas()
    offers = {o.name: o for o in list_offers(ctx)}
    outcomes = outcomes[outcomes["offer"].isin(offers) & outcomes["sent_at"].notna()].copy()
    converted = outcomes["converted"].astype(bool)
    n_yes, n_no = int(converted.sum()), int((~converted).sum())
    if len(outcomes) < MIN_OUTCOMES or min(n_yes, n_no) < MIN_CONVERSIONS:
        raise ModelError(
            f"{len(outcomes)} usable outcomes with {n_yes} conversions and {n_no} non-conversions "
            f"(need {MIN_OUTCOMES} outcomes and {MIN_CONVERSIONS} of each); the prior is used"
        )
    outcomes["sent_day"] = pd.to_datetime(outcomes["sent_at"], utc=True).dt.date
    data = _outcome_features(ctx, outcomes)
    design: dict[str, np.ndarray] = {}
    for name, group in data.groupby("offer", sort=True):
        o = offers[name]
        block = _design(group, o.kind, o.value)
        for column, values in block.items():
            design.setdefault(column, np.zeros(len(data)))[group.index.to_numpy()] = values
    kinds_present = [k for k in KINDS if design[f"kind_{k}"].any()]
    reference = f"kind_{kinds_present[0]}"
    columns = [c for c in FEATURES if c != reference and np.ptp(design[c]) > 0]
    x = np.column_stack([design[c] for c in columns])
    y = data["converted"].astype(bool).to_numpy()
    mean, scale = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / scale
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    cv = LogisticRegressionCV(
        Cs=np.logspace(-3, 2, 11),
        cv=folds,
        scoring="neg_log_loss",
        max_iter=2000,
        l1_ratios=(0.0,),
        use_legacy_attributes=False,
    )
    cv.fit(xs, y)
    best_c = float(cv.C_)
    held_out = cross_val_predict(
        LogisticRegression(C=best_c, max_iter=2000), xs, y, cv=folds, method="predict_proba"
    )[:, 1]
    calibration = {
        "brier": float(np.mean((held_out - y) ** 2)),
        "brier_base_rate": float(np.mean((y.mean() - y) ** 2)),
        "reliability": _reliability(held_out, y),
    }
    data_as_of = max(data["sent_day"])
    with ctx.ops.session() as s:
        version = next_version(s, PROPENSITY_KIND)
        s.add(
            ModelVersion(
                kind=PROPENSITY_KIND,
                version=version,
                as_of=data_as_of,
                params={
                    "columns": columns,
                    "reference_kind": reference.removeprefix("kind_"),
                    "intercept": float(cv.intercept_[0]),
                    "coef": cv.coef_[0].tolist(),
                    "mean": mean.tolist(),
                    "scale": scale.tolist(),
                    "C": best_c,
                    "outcomes": int(len(data)),
                    "conversions": n_yes,
                    "conversion_rate": float(y.mean()),
                    "calibration": calibration,
                },
            )
        )
    return PropensityModel(
        version, columns, float(cv.intercept_[0]), cv.coef_[0], mean, scale, data_as_of, calibration
    )


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
        if "columns" not in p:  # a model stored before the identifiable design: refit it
            return None
        return PropensityModel(
            row.version,
            list(p["columns"]),
            p["intercept"],
            np.array(p["coef"]),
            np.array(p["mean"]),
            np.array(p["scale"]),
            row.as_of,
            p.get("calibration"),
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
