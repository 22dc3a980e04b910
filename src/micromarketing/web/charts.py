"""The dashboard's charts: the HTML report's figures (:mod:`micromarketing.measure.charts`) as page divs.

Only presentation lives here: each function takes the small frames the facade returns
(``ws.reports.inputs()``, ``ws.reports.campaign(name)``) and hands back ready-to-embed markup,
or None when there is nothing to draw.  plotly.js is served once by the app (``/static``).
"""

from __future__ import annotations

from typing import Any

from micromarketing.measure import charts
from micromarketing.measure.report import chart_html


def overview(inputs: Any) -> dict[str, Any]:
    """The overview's charts, by name, drawn only for the data the workspace holds."""
    drawn: dict[str, Any] = {}
    if inputs.rfm_grid is not None and len(inputs.rfm_grid):
        drawn["rfm"] = chart_html(charts.rfm_heatmap(inputs.rfm_grid, currency=inputs.currency), "chart-rfm")
    if inputs.clv_tiers is not None and len(inputs.clv_tiers):
        drawn["tiers"] = chart_html(charts.clv_by_tier(inputs.clv_tiers, currency=inputs.currency),
                                    "chart-tiers")
    if inputs.segments is not None and len(inputs.segments):
        drawn["segments"] = chart_html(
            charts.segment_sizes(inputs.segments, currency=inputs.currency), "chart-segments"
        )
    return drawn


def campaign(results: Any) -> dict[str, Any]:
    """A campaign's funnel, lift intervals and budget reallocation, where its results hold them."""
    drawn: dict[str, Any] = {}
    frame = results.frame()
    if not len(frame):
        return drawn
    stages = ["assigned", "delivered", "opened", "clicked", "conversions"]
    funnel = frame.groupby("variant", as_index=False)[stages].sum(min_count=1)
    drawn["funnel"] = chart_html(charts.campaign_funnel(funnel), "chart-funnel")
    if frame["lift"].notna().any():
        drawn["lift"] = chart_html(charts.lift_intervals(frame, lift_kind=results.lift_kind), "chart-lift")
    if frame["budget_next"].notna().any():
        drawn["reallocation"] = chart_html(
            charts.budget_reallocation(frame, currency=results.currency), "chart-reallocation"
        )
    return drawn
