"""The result model of profiling: what ``build_profiles`` produced."""

from __future__ import annotations

from datetime import date

from pydantic import ConfigDict

from micromarketing.results import Result


class ProfileResult(Result):
    """What ``build_profiles`` produced: the date, how many customers (with orders), the
    currency and the CLV model version the value columns came from (None: no model yet)."""

    model_config = ConfigDict(frozen=True)

    as_of: date
    customers: int
    with_orders: int
    currency: str | None
    clv_model_version: int | None = None
