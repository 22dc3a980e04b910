"""The ``ws.measure`` sub-facade: measure a campaign, recommend the next round's budget."""

from __future__ import annotations

from datetime import datetime

from micromarketing.measure.allocate import allocate_for_workspace
from micromarketing.measure.kpis import measure_campaign
from micromarketing.measure.results import Allocation, CampaignMeasurement
from micromarketing.store.context import StoreContext


class Measure:
    """Campaign measurement (attribution, KPIs, lift with honest statistics) and reallocation."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def campaign(self, name: str, as_of: datetime | None = None) -> CampaignMeasurement:
        """Per segment and variant: funnel, outcomes, SRM check and lift over control."""
        return measure_campaign(self.ctx, name, as_of=as_of)

    def allocate(
        self,
        name: str,
        budget: float,
        *,
        min_share: float | None = None,
        seed: int = 0,
        as_of: datetime | None = None,
    ) -> Allocation:
        """The next round's spend per segment × variant by Thompson sampling on the posterior of ROI."""
        measurement = measure_campaign(self.ctx, name, as_of=as_of)
        return allocate_for_workspace(self.ctx, measurement, budget, min_share=min_share, seed=seed)
