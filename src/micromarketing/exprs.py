"""Portable Ibis building blocks shared by profiles and segments.

They compile for DuckDB and Spark alike, so everything built on them runs on both backends.
``arg_min``/``arg_max`` use the engines' ``min_by`` as a builtin aggregate because Ibis' own
``argmin``/``argmax`` compile to an ordered ``FIRST(… ORDER BY …)`` on DuckDB, several times
slower than the native ``arg_min`` that sqlglot emits for ``MIN_BY`` (Spark has ``min_by``
natively), and because ours break ties the same way on every engine.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


_RANKED = dt.Struct({"key": "float64", "tie": "string"})


@ibis.udf.agg.builtin(name="min_by")
def _min_by_ranked(arg: str, key: _RANKED) -> str:  # type: ignore[valid-type,empty-body]
    """``arg`` of the row with the smallest (key, tie) pair in each group."""


def arg_min(arg: ir.StringValue, key: ir.NumericValue) -> ir.StringValue:
    """The ``arg`` with the smallest ``key`` per group; ties go to the alphabetically first ``arg``.

    Rows whose ``arg`` or ``key`` is NULL never win.  The tie-break makes the result the same on
    every engine and every run (a plain ``min_by`` picks any of the tied rows).
    """
    return _min_by_ranked(arg, _ranked(arg, key.cast("float64")))


def arg_max(arg: ir.StringValue, key: ir.NumericValue) -> ir.StringValue:
    """The ``arg`` with the largest ``key`` per group; ties go to the alphabetically first ``arg``."""
    return _min_by_ranked(arg, _ranked(arg, -key.cast("float64")))


def _ranked(arg: ir.StringValue, key: ir.FloatingValue) -> ir.StructValue:
    usable = arg.notnull() & key.notnull()
    return ibis.ifelse(usable, ibis.struct({"key": key, "tie": arg}), ibis.null(_RANKED))


def haversine_km(
    lat1: ir.NumericValue | float,
    lon1: ir.NumericValue | float,
    lat2: ir.NumericValue | float,
    lon2: ir.NumericValue | float,
) -> ir.FloatingValue:
    """Great-circle distance in kilometres between two points given in degrees.

    Any missing coordinate gives a NULL distance (never a match, never a bogus number)."""
    columns = [v for v in (lat1, lon1, lat2, lon2) if not isinstance(v, int | float)]
    lat1, lon1, lat2, lon2 = (
        ibis.literal(v, type="float64") if isinstance(v, int | float) else v.cast("float64")
        for v in (lat1, lon1, lat2, lon2)
    )
    phi1, phi2 = lat1.radians(), lat2.radians()
    half_dphi = (lat2 - lat1).radians() / 2
    half_dlambda = (lon2 - lon1).radians() / 2
    a = half_dphi.sin() ** 2 + phi1.cos() * phi2.cos() * half_dlambda.sin() ** 2
    # least() guards asin against rounding just above 1, but it skips NULLs on both engines, so
    # missing coordinates are handled explicitly.
    distance = 2 * EARTH_RADIUS_KM * ibis.least(a.sqrt(), 1.0).asin()
    if not columns:
        return distance
    missing = columns[0].isnull()
    for column in columns[1:]:
        missing = missing | column.isnull()
    return ibis.ifelse(missing, ibis.null("float64"), distance)


def start_of_day_utc(day: date) -> datetime:
    """Midnight UTC at the start of ``day``: "before the as-of date" means before this instant."""
    return datetime.combine(day, time(), tzinfo=UTC)


def midnight_utc(day: date) -> ir.TimestampScalar:
    """:func:`start_of_day_utc` as an Ibis literal, for filters."""
    return ibis.literal(start_of_day_utc(day), type="timestamp('UTC')")


def left_join_on_customer(left: ir.Table, right: ir.Table) -> ir.Table:
    """Left join on ``customer_id`` keeping one key column (Ibis keeps both sides' otherwise).

    ``view()`` closes the left side's join chain: Ibis would otherwise try to extend the chain and
    reject a predicate on a computed key.
    """
    left = left.view()
    right = right.rename(_right_customer_id="customer_id")
    return left.left_join(right, left.customer_id == right._right_customer_id).drop("_right_customer_id")
