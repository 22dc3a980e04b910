"""The reports sub-facade (``ws.reports``): the workspace's HTML report, with a campaign's sections.

A campaign's numbers come from ``measurement`` when the workspace wires one (a callable from a
campaign name to :class:`~micromarketing.measure.report.CampaignResults`); without it the report
shows what the operations store counts (assigned and delivered per segment and arm).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from micromarketing.measure.report import (
    CampaignResults,
    ReportFile,
    ReportInputs,
    build_report,
    campaign_from_store,
    gather_inputs,
    write_report,
)
from micromarketing.store.context import StoreContext

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
        return campaign_from_store(self.ctx, name)

    def build(self, campaign: str | None = None) -> str:
        """The report's HTML: the analytics sections, preceded by ``campaign``'s when given."""
        return build_report(self.inputs(), self.campaign(campaign) if campaign else None)

    def write(self, path: str | Path, campaign: str | None = None) -> ReportFile:
        """Write the report to ``path`` and say what it holds."""
        return write_report(path, self.inputs(), self.campaign(campaign) if campaign else None)
