"""Build the ``profiles`` table: one row per customer, computed in the warehouse through Ibis.

Everything here is an Ibis expression, so the same profile runs on DuckDB and on Spark; the
warehouse executes it as one SQL statement and materialises the result.  A profile is a pure
function of the stored data and an explicit ``as_of`` date: only orders and events strictly
before ``as_of`` (midnight UTC) count, so results are reproducible.

RFM scores are quintiles by ``percent_rank`` (ties share a score, unlike ``ntile`` which splits
equal values arbitrarily); the named segment comes from the recency score and the mean of the
frequency and monetary scores on the usual 5×5 RFM grid (see :data:`RFM_GRID`).
"""

from __future__ import annotations

from datetime import date, timedelta

import ibis
import ibis.expr.types as ir

from micromarketing.errors import DataError
from micromarketing.exprs import left_join_on_customer, start_of_day_utc
from micromarketing.profiles import clv
from micromarketing.profiles.as_of import resolve_as_of
from micromarketing.profiles.currency import single_currency
from micromarketing.profiles.results import ProfileResult
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext

# (segment, recency scores, frequency-monetary scores): every cell of the 5×5 grid is covered once.
RFM_GRID: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("champions", (5,), (4, 5)),
    ("loyal", (3, 4), (4, 5)),
    ("potential_loyalists", (4, 5), (2, 3)),
    ("new", (5,), (1,)),
    ("promising", (4,), (1,)),
    ("need_attention", (3,), (1, 2, 3)),
    ("at_risk", (1, 2), (3, 4)),
    ("cannot_lose", (1, 2), (5,)),
    ("hibernating", (2,), (1, 2)),
    ("lost", (1,), (1, 2)),
)
NO_ORDERS_SEGMENT = "prospects"
# The columns of the ``profiles`` table, in order (CLV columns follow when a model is fitted).
PROFILE_COLUMNS = (
    "customer_id",
    "as_of",
    "first_order_at",
    "last_order_at",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "rfm_segment",
    "top_category",
    "preferred_channel",
    "age",
    "age_band",
    "nearest_store_id",
    "nearest_store_km",
    "h3_cell",
)
AGE_BANDS: tuple[tuple[int, int | None, str], ...] = (
    (18, 24, "18-24"),
    (25, 34, "25-34"),
    (35, 44, "35-44"),
    (45, 54, "45-54"),
    (55, 64, "55-64"),
    (65, None, "65+"),
)


def build_profiles(
    ctx: StoreContext, as_of: date | None = None, progress: ProgressCallback = noop_progress
) -> ProfileResult:
    """Materialise the ``profiles`` table as of ``as_of`` (default: the day after the last order)."""
    steps = 3
    progress("profile", 0, steps)
    transactions = ctx.table("transactions")
    as_of = resolve_as_of(transactions, as_of, ctx.settings.ingest.min_date)
    currency = single_currency(transactions, as_of)
    expr = profiles_as_of(ctx, as_of)
    progress("profile", 1, steps)
    clv_version = None
    fit = clv.latest_clv_fit(ctx)
    if fit is not None:
        features = clv.clv_features(ctx, as_of, fit)
        expr = expr.left_join(features, "customer_id").drop("customer_id_right")
        clv_version = fit.version
    profiles = ctx.warehouse.replace_table("profiles", expr)
    progress("profile", 2, steps)
    counts = profiles.aggregate(
        customers=profiles.count(), with_orders=(profiles.frequency > 0).sum()
    ).execute()
    progress("profile", steps, steps)
    return ProfileResult(
        as_of=as_of,
        customers=int(counts["customers"][0]),
        with_orders=int(counts["with_orders"][0] or 0),
        currency=currency,
        clv_model_version=clv_version,
    )


def profiles_as_of(ctx: StoreContext, as_of: date) -> ir.Table:
    """Every customer's profile as of ``as_of`` as an expression (nothing is stored).

    Only orders and events before ``as_of`` count, so a model trained on past outcomes can see
    each customer as they were when the message went out, not as they are today."""
    cutoff = start_of_day_utc(as_of)
    return profile_expr(
        customers=ctx.table("customers"),
        orders=ctx.warehouse.rollup("customer_orders", before=cutoff),
        engagement=ctx.warehouse.rollup("customer_engagement", before=cutoff),
        geo=ctx.warehouse.rollup("customer_geo"),
        as_of=as_of,
    )


def default_as_of(transactions: ir.Table) -> date:
    """The day after the last stored order, so that every order counts."""
    last = transactions.ordered_at.max().execute()
    if last is None or last != last:  # None or NaT
        raise DataError("no transactions stored yet: ingest transactions before profiling")
    return last.date() + timedelta(days=1)


def profile_expr(
    *,
    customers: ir.Table,
    orders: ir.Table,
    engagement: ir.Table,
    geo: ir.Table,
    as_of: date,
) -> ir.Table:
    """The profile of every customer as one Ibis expression (nothing is executed here).

    ``orders`` and ``engagement`` are the per-customer rollups of the transactions and events
    before ``as_of`` (:mod:`micromarketing.store.rollups`).
    """
    as_of_lit = ibis.literal(as_of, type="date")
    order_stats = orders.select(
        "customer_id",
        "first_order_at",
        "last_order_at",
        "top_category",
        frequency=orders.orders,
        monetary=orders.spend,
    )
    base = customers.select("customer_id", "birth_date", "signup_date", "h3_cell").outer_join(
        order_stats, "customer_id"
    )
    base = base.select(
        customer_id=ibis.coalesce(base.customer_id, base.customer_id_right),
        birth_date=base.birth_date,
        signup_date=base.signup_date,
        h3_cell=base.h3_cell,
        first_order_at=base.first_order_at,
        last_order_at=base.last_order_at,
        frequency=base.frequency.fill_null(0),
        monetary=base.monetary.fill_null(0.0),
        top_category=base.top_category,
    )
    joined = base
    for extra in (engagement.select("customer_id", "preferred_channel"), geo):
        joined = left_join_on_customer(joined, extra)

    has_orders = joined.frequency > 0
    start = ibis.coalesce(joined.signup_date, joined.first_order_at.date())
    with_measures = joined.mutate(
        as_of=as_of_lit,
        recency_days=ibis.ifelse(has_orders, _days_between(joined.last_order_at.date(), as_of_lit), None),
        tenure_days=_days_between(start, as_of_lit),
        avg_order_value=ibis.ifelse(has_orders, joined.monetary / joined.frequency, None),
        age=_age_years(joined.birth_date, as_of),
    )
    scored = _rfm_scores(with_measures)
    return scored.mutate(age_band=_age_band(scored.age)).select(*PROFILE_COLUMNS)


def _days_between(start: ir.DateValue, end: ir.DateValue) -> ir.IntegerValue:
    return end.delta(start, unit="day").cast("int64")


def _age_years(birth_date: ir.DateValue, as_of: date) -> ir.IntegerValue:
    """Completed years at ``as_of`` (a birthday later in the year has not happened yet)."""
    years = as_of.year - birth_date.year()
    birthday_pending = (birth_date.month() > as_of.month) | (
        (birth_date.month() == as_of.month) & (birth_date.day() > as_of.day)
    )
    return (years - birthday_pending.cast("int64")).cast("int64")


def _age_band(age: ir.IntegerValue) -> ir.StringValue:
    return ibis.cases(
        *(
            ((age >= low) & (age <= high) if high is not None else age >= low, label)
            for low, high, label in AGE_BANDS
        ),
        else_=None,
    )


def _rfm_scores(t: ir.Table) -> ir.Table:
    """Quintile scores among customers with orders, and the named RFM segment."""
    buyers = t.frequency > 0

    def quintile(order_key: ir.Value) -> ir.IntegerValue:
        window = ibis.window(group_by=buyers, order_by=order_key)
        rank = ibis.percent_rank().over(window)
        score = ibis.least((rank * 5).floor().cast("int64") + 1, 5)
        return ibis.ifelse(buyers, score, None)

    scored = t.mutate(
        r_score=quintile(ibis.desc(t.recency_days)),
        f_score=quintile(t.frequency),
        m_score=quintile(t.monetary),
    )
    fm = ((scored.f_score + scored.m_score) / 2).ceil().cast("int64")
    segment = ibis.cases(
        *(
            (scored.r_score.isin(r_scores) & fm.isin(fm_scores), name)
            for name, r_scores, fm_scores in RFM_GRID
        ),
        else_=NO_ORDERS_SEGMENT,
    )
    return scored.mutate(
        rfm_score=ibis.ifelse(
            buyers,
            scored.r_score.cast("string") + scored.f_score.cast("string") + scored.m_score.cast("string"),
            None,
        ),
        rfm_segment=segment,
    )
