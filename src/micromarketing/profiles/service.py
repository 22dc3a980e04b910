"""The CLV sub-facade (``ws.clv``): fit the value models, backtest them, find the latest fit."""

from __future__ import annotations

from datetime import date

from micromarketing.profiles.clv import (
    DEFAULT_MIN_GROUP_SIZE,
    BacktestResult,
    ClvFit,
    GroupSource,
    backtest,
    fit_clv,
    latest_clv_fit,
)
from micromarketing.store.context import StoreContext


class Clv:
    """CLV operations over one workspace; the one entry point of ``profiles.clv``.

    ``segment_groups`` gives the discovered segments' membership as of a date (the facade wires
    it, since profiles sit below segments); ``by="segments"`` needs it.
    """

    def __init__(self, ctx: StoreContext, segment_groups: GroupSource | None = None) -> None:
        self.ctx = ctx
        self.segment_groups = segment_groups

    def fit(
        self,
        as_of: date | None = None,
        model: str = "bgnbd",
        *,
        by: str | None = None,
        min_group_size: int | None = None,
    ) -> ClvFit:
        """Fit the transaction and spend models (per group with ``by``) and store them as a version."""
        return fit_clv(
            self.ctx,
            as_of=as_of,
            model=model,
            by=by,
            min_group_size=min_group_size or DEFAULT_MIN_GROUP_SIZE,
            segment_groups=self.segment_groups,
        )

    def backtest(
        self,
        calibration_end: date,
        holdout_end: date | None = None,
        *,
        by: str | None = None,
        model: str = "bgnbd",
        min_group_size: int | None = None,
    ) -> BacktestResult:
        """Holdout repeat transactions against a calibration fit, pooled and per group."""
        return backtest(
            self.ctx,
            calibration_end,
            holdout_end,
            by=by,
            model=model,
            min_group_size=min_group_size or DEFAULT_MIN_GROUP_SIZE,
            segment_groups=self.segment_groups,
        )

    def latest(self) -> ClvFit | None:
        """The most recently stored fit, or None before the first ``fit``."""
        return latest_clv_fit(self.ctx)
