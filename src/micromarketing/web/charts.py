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
    """A campaign's funnel, lift intervals, ROI and budget reallocation: the report's figures
    (:func:`micromarketing.measure.charts.campaign_charts`), by name."""
    frame = results.frame()
    if not len(frame):
        return {}
    figures = charts.campaign_charts(frame, lift_kind=results.lift_kind, currency=results.currency)
    return {name: chart_html(fig, f"chart-{name}") for name, fig in figures.items()}
