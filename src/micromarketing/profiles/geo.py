"""Geographic expressions shared by profiles and segment rules (pure Ibis, so they run anywhere).

The haversine great-circle distance is written as an Ibis expression rather than taken from a
spatial extension so that the same query compiles for DuckDB and Spark without extensions.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


def haversine_km(
    lat1: ir.NumericValue | float,
    lon1: ir.NumericValue | float,
    lat2: ir.NumericValue | float,
    lon2: ir.NumericValue | float,
) -> ir.FloatingValue:
    """Great-circle distance in kilometres between two points given in degrees."""
    lat1, lon1, lat2, lon2 = (ibis.literal(v) if isinstance(v, int | float) else v for v in (lat1, lon1, lat2, lon2))
    phi1, phi2 = lat1.radians(), lat2.radians()
    half_dphi = (lat2 - lat1).radians() / 2
    half_dlambda = (lon2 - lon1).radians() / 2
    a = half_dphi.sin() ** 2 + phi1.cos() * phi2.cos() * half_dlambda.sin() ** 2
    # least() guards against a > 1 by rounding, which would make asin return NULL/NaN.
    return 2 * EARTH_RADIUS_KM * ibis.least(a.sqrt(), 1.0).asin()
