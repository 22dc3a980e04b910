"""The CLV sub-facade (``ws.clv``): fit the value models and find the latest fit of a workspace."""

from __future__ import annotations

from datetime import date
from typing import Literal

from micromarketing.profiles.clv import ClvFit, fit_clv, latest_clv_fit
from micromarketing.store.context import StoreContext


class Clv:
    """CLV operations over one workspace; the one entry point of ``profiles.clv``."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def fit(self, as_of: date | None = None, model: Literal["bgnbd", "paretonbd"] = "bgnbd") -> ClvFit:
        """Fit the transaction and spend models and store them as a new version."""
        return fit_clv(self.ctx, as_of=as_of, model=model)

    def latest(self) -> ClvFit | None:
        """The most recently stored fit, or None before the first ``fit``."""
        return latest_clv_fit(self.ctx)
