"""The reports sub-facade (``ws.reports``): the workspace's HTML report, with a campaign's sections.

A campaign's numbers come from the measurement (:mod:`micromarketing.measure.kpis`: funnel, lifts
raw and shrunk, ROI) and the reallocation of its budget (:mod:`micromarketing.measure.allocate`),
or from ``measurement`` when given (a callable from a campaign name to
:class:`~micromarketing.measure.report.CampaignResults`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from micromarketing.errors import DataError
from micromarketing.measure.allocate import allocate_for_workspace
from micromarketing.measure.kpis import measure_campaign
from micromarketing.measure.report import (
    CampaignResults,
    ReportFile,
    ReportInputs,
    build_report,
    from_measurement,
    gather_inputs,
    write_report,
)
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Campaign

Measurement = Callable[[str], CampaignResults]


class Reports:
    """Build and write the HTML report of one workspace (``Reports(ctx)``; cheap to create)."""

    def __init__(self, ctx: StoreContext, measurement: Measurement | None = None) -> None:
        self.ctx = ctx
        self.measurement = measurement

    def inputs(self) -> ReportInputs:
        """The aggregated numbers the analytics sections draw (small frames)."""
        return gather_inputs(self.ctx)

    def campaign(self, name: str) -> CampaignResults:
        """What the campaign sections of ``name`` draw (NotFoundError for an unknown campaign)."""
        if self.measurement is not None:
            return self.measurement(name)
        return measured_campaign(self.ctx, name)

    def build(self, campaign: str | None = None) -> str:
        """The report's HTML: the analytics sections, preceded by ``campaign``'s when given."""
        return build_report(self.inputs(), self.campaign(campaign) if campaign else None)

    def write(self, path: str | Path, campaign: str | None = None) -> ReportFile:
        """Write the report to ``path`` and say what it holds."""
        return write_report(path, self.inputs(), self.campaign(campaign) if campaign else None)


def measured_campaign(ctx: StoreContext, name: str) -> CampaignResults:
    """Campaign ``name`` measured, with the reallocation of its budget for the next round (the
    campaign's own budget; none when it has none)."""
    measurement = measure_campaign(ctx, name)
    with ctx.ops.session() as session:
        budget = session.scalar(select(Campaign.budget).where(Campaign.name == name))
    allocation = None
    if budget:
        try:
            allocation = allocate_for_workspace(ctx, measurement, float(budget))
        except DataError:  # nothing delivered yet, so no cost to allocate by: no reallocation section
            allocation = None
    return from_measurement(measurement, allocation)
