"""The as-of date of a profile or CLV fit, checked against the stored data and the plausible range.

An ``as_of`` before ``settings.ingest.min_date`` or after :data:`MAX_AS_OF` is invalid input; one
on or before the earliest stored order leaves nothing to compute (:class:`DataError`).  The
default (the day after the last order) is refused when the last order lies beyond
:data:`MAX_AS_OF` (only possible for rows stored before ingest checked plausible ranges), instead
of overflowing a date later.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta

import ibis.expr.types as ir
import pandas as pd

from micromarketing.errors import DataError, InvalidInputError

MAX_AS_OF = date(2262, 1, 1)  # pandas' nanosecond timestamps end in April 2262


def resolve_as_of(transactions: ir.Table, as_of: date | None, min_date: date) -> date:
    """``as_of`` checked (or, when None, the day after the last stored order); see the module docstring."""
    bounds = transactions.aggregate(
        first=transactions.ordered_at.min(), last=transactions.ordered_at.max()
    ).to_pyarrow()
    first, last = (_utc_date(bounds[c][0].as_py()) for c in ("first", "last"))
    if as_of is None:
        if last is None:
            raise DataError("no transactions stored yet: ingest transactions before profiling")
        if last >= MAX_AS_OF:
            raise DataError(
                f"the last stored order is dated {last.isoformat()}, beyond {MAX_AS_OF.isoformat()}: "
                "re-ingest that order with a plausible date, or pass --as-of"
            )
        return last + timedelta(days=1)
    if as_of < min_date:
        raise InvalidInputError(
            f"--as-of {as_of.isoformat()}: before settings.ingest.min_date {min_date.isoformat()}"
        )
    if as_of > MAX_AS_OF:
        raise InvalidInputError(f"--as-of {as_of.isoformat()}: after {MAX_AS_OF.isoformat()}")
    if first is not None and as_of <= first:
        raise DataError(
            f"no transactions before {as_of.isoformat()} (--as-of): the earliest is dated "
            f"{first.isoformat()}"
        )
    return as_of


def _utc_date(value: object) -> date | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value) if not hasattr(value, "astimezone") else value
    if getattr(stamp, "tzinfo", None) is not None:
        stamp = stamp.astimezone(UTC)
    return stamp.date()  # type: ignore[union-attr]
