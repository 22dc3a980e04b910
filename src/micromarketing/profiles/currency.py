"""The currency check every model shares: amounts are added up, never converted between currencies."""

from __future__ import annotations

from datetime import date

import ibis.expr.types as ir

from micromarketing.errors import DataError
from micromarketing.exprs import midnight_utc


def single_currency(transactions: ir.Table, as_of: date) -> str | None:
    """The one currency of the transactions before ``as_of``; models add amounts up and never convert."""
    # min == max over the whole table is answered from column statistics, without a scan.
    bounds = transactions.aggregate(lo=transactions.currency.min(), hi=transactions.currency.max()).execute()
    if bounds["lo"][0] == bounds["hi"][0]:
        return bounds["lo"][0]
    before = transactions.filter(transactions.ordered_at < midnight_utc(as_of))
    currencies = sorted(
        c for c in before.select("currency").distinct().execute()["currency"] if c is not None
    )
    if len(currencies) > 1:
        raise DataError(
            f"transactions mix currencies {', '.join(currencies)}; profiles add amounts up and "
            "never convert silently — ingest one currency per workspace"
        )
    return currencies[0] if currencies else None
