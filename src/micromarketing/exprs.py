"""Portable Ibis building blocks shared by profiles and segments.

They compile for DuckDB and Spark alike, so everything built on them runs on both backends.
``min_by``/``max_by`` are declared as builtin aggregates because Ibis' own ``argmin``/``argmax``
compile to an ordered ``FIRST(… ORDER BY …)`` on DuckDB, several times slower than the native
``arg_min`` that sqlglot emits for ``MIN_BY`` (Spark has ``min_by`` natively).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


@ibis.udf.agg.builtin(name="min_by")
def min_by(arg: str, key: float) -> str:  # type: ignore[empty-body]
    """The ``arg`` of the row with the smallest ``key`` in each group."""


@ibis.udf.agg.builtin(name="max_by")
def max_by(arg: str, key: float) -> str:  # type: ignore[empty-body]
    """The ``arg`` of the row with the largest ``key`` in each group."""


def haversine_km(
    lat1: ir.NumericValue | float,
    lon1: ir.NumericValue | float,
    lat2: ir.NumericValue | float,
    lon2: ir.NumericValue | float,
) -> ir.FloatingValue:
    """Great-circle distance in kilometres between two points given in degrees."""
    lat1, lon1, lat2, lon2 = (
        ibis.literal(v, type="float64") if isinstance(v, int | float) else v for v in (lat1, lon1, lat2, lon2)
    )
    phi1, phi2 = lat1.radians(), lat2.radians()
    half_dphi = (lat2 - lat1).radians() / 2
    half_dlambda = (lon2 - lon1).radians() / 2
    a = half_dphi.sin() ** 2 + phi1.cos() * phi2.cos() * half_dlambda.sin() ** 2
    # least() guards against a > 1 by rounding, which would make asin return NULL/NaN.
    return 2 * EARTH_RADIUS_KM * ibis.least(a.sqrt(), 1.0).asin()
