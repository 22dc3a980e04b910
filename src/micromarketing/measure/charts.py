"""Charts of the reports and the dashboard: plain data in, one Plotly figure out.

Every function here is pure: it takes a small DataFrame (or lists) whose columns are documented
in its docstring and returns a :class:`plotly.graph_objects.Figure` in the house style
(:data:`HOUSE`), with a title that says what the chart shows.  Nothing here reads a store or
writes a file, so the HTML report (:mod:`micromarketing.measure.report`) and the web dashboard
draw the same pictures from the same numbers.  User text (segment and persona names) reaches the
figures only as data: Plotly serialises it as JSON and draws it as text.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import h3
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

FONT = '-apple-system, "Segoe UI", Helvetica, Arial, sans-serif'
INK = "#1f2933"
GRID = "#e4e7eb"
MUTED = "#7b8794"
BLUE = "#2f6fad"
ORANGE = "#e07b39"
GREEN = "#2e8b57"
RED = "#c0392b"
PALETTE = (BLUE, ORANGE, GREEN, "#8e5ea2", "#d4a017", "#17a2b8", RED, "#6c757d")
# Light to dark blue: the classes of the H3 map (few enough to tell apart in the legend).
HEX_CLASSES = ("#dbe9f6", "#a9cce3", "#6baed6", "#3182bd", "#08519c", "#08306b")
TIER_LABELS = {"top_1": "Top 1 %", "top_10": "Top 10 %", "top_50": "Top 50 %", "rest": "Rest"}
FUNNEL_STAGES = (
    ("assigned", "Assigned"),
    ("delivered", "Delivered"),
    ("opened", "Opened"),
    ("clicked", "Clicked"),
    ("conversions", "Converted"),
)
CONTROL_ARM = "control"  # the arm name of a campaign's control group in result frames
WHOLE_CAMPAIGN = "all"  # the segment name of the measurement's campaign-wide rows

HOUSE = go.layout.Template(
    layout=go.Layout(
        font={"family": FONT, "size": 13, "color": INK},
        title={"x": 0, "xanchor": "left", "font": {"size": 16}},
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=list(PALETTE),
        xaxis={"gridcolor": GRID, "zerolinecolor": MUTED, "automargin": True, "linecolor": GRID},
        yaxis={"gridcolor": GRID, "zerolinecolor": MUTED, "automargin": True, "linecolor": GRID},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        margin={"l": 10, "r": 20, "t": 80, "b": 40},
        hoverlabel={"align": "left"},
    )
)


def _styled(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(template=HOUSE, title={"text": title}, height=height)
    return fig


def _money(currency: str | None) -> str:
    return f" ({currency})" if currency else ""


def _rows_height(n: int, per_row: int = 30, base: int = 160) -> int:
    return base + per_row * max(n, 1)


def _require(frame: pd.DataFrame, columns: Sequence[str], chart: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{chart}: missing columns {missing} (has {list(frame.columns)})")


def _arm_labels(frame: pd.DataFrame) -> list[str]:
    """``segment · variant`` when a campaign has several variants, else the segment alone."""
    if frame["variant"].nunique() > 1:
        return [f"{s} · {v}" for s, v in zip(frame["segment"], frame["variant"], strict=True)]
    return [str(s) for s in frame["segment"]]


# -- segments and RFM ----------------------------------------------------------------------------
def segment_sizes(
    segments: pd.DataFrame, *, title: str = "Segment size and revenue", currency: str | None = None
) -> go.Figure:
    """Customers and revenue per segment, side by side, largest segment on top.

    Columns: ``segment``, ``customers``, ``revenue`` and an optional ``label`` drawn instead of
    the name (a discovered segment's persona says more than ``discovered_03``).
    """
    _require(segments, ("segment", "customers", "revenue"), "segment_sizes")
    frame = segments.sort_values("customers", ascending=True)
    names = [str(s) for s in frame["label" if "label" in frame.columns else "segment"]]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=("Customers", f"Revenue{_money(currency)}"),
    )
    fig.add_trace(
        go.Bar(
            y=names,
            x=frame["customers"],
            orientation="h",
            name="Customers",
            marker_color=BLUE,
            text=[f"{int(v):,}" for v in frame["customers"]],
            textposition="auto",
            hovertemplate="%{y}: %{x:,} customers<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            y=names,
            x=frame["revenue"],
            orientation="h",
            name="Revenue",
            marker_color=GREEN,
            text=[f"{v:,.0f}" for v in frame["revenue"].fillna(0)],
            textposition="auto",
            hovertemplate="%{y}: %{x:,.0f} revenue<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_layout(showlegend=False)
    fig.update_xaxes(tickformat="~s")
    return _styled(fig, title, _rows_height(len(frame)))


def rfm_heatmap(grid: pd.DataFrame, *, currency: str | None = None) -> go.Figure:
    """Customers and revenue on the recency × frequency score grid (5 = most recent / most frequent).

    Columns: ``r_score``, ``f_score`` (1–5), ``customers``, ``revenue``.
    """
    _require(grid, ("r_score", "f_score", "customers", "revenue"), "rfm_heatmap")
    scores = [1, 2, 3, 4, 5]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("Customers", f"Revenue{_money(currency)}"),
    )
    for col, (metric, scale, fmt) in enumerate(
        (("customers", "Blues", "%{z:,}"), ("revenue", "Greens", "%{z:,.0f}")), start=1
    ):
        table = grid.pivot_table(index="r_score", columns="f_score", values=metric, aggfunc="sum")
        table = table.reindex(index=scores, columns=scores).fillna(0)
        fig.add_trace(
            go.Heatmap(
                z=table.to_numpy(),
                x=[f"F{s}" for s in scores],
                y=[f"R{s}" for s in scores],
                colorscale=scale,
                texttemplate=fmt,
                showscale=False,
                hovertemplate=f"recency %{{y}}, frequency %{{x}}: {fmt}<extra>{metric}</extra>",
                xgap=2,
                ygap=2,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="frequency score (5 = most orders)", row=1, col=col)
        fig.update_yaxes(title_text="recency score (5 = bought most recently)", row=1, col=col)
    return _styled(fig, "RFM grid: where customers and revenue sit", 460)


# -- value -----------------------------------------------------------------------------------------
def clv_by_tier(tiers: pd.DataFrame, *, currency: str | None = None) -> go.Figure:
    """Spread of the CLV in each value tier, from precomputed quantiles.

    Columns: ``value_tier`` (top_1, top_10, top_50, rest), ``customers``, ``p05``, ``q1``,
    ``median``, ``q3``, ``p95``, ``mean``.  Whiskers span the 5th–95th percentiles; the axis is
    logarithmic when every value is positive (tiers differ by orders of magnitude).
    """
    _require(tiers, ("value_tier", "customers", "p05", "q1", "median", "q3", "p95", "mean"), "clv_by_tier")
    order = {t: i for i, t in enumerate(TIER_LABELS)}
    frame = tiers.sort_values("value_tier", key=lambda s: s.map(order), ascending=False)
    fig = go.Figure()
    for i, row in enumerate(frame.itertuples(index=False)):
        label = f"{TIER_LABELS.get(str(row.value_tier), str(row.value_tier))} ({int(row.customers):,})"
        fig.add_trace(
            go.Box(
                y=[label],
                lowerfence=[row.p05],
                q1=[row.q1],
                median=[row.median],
                q3=[row.q3],
                upperfence=[row.p95],
                mean=[row.mean],
                orientation="h",
                name=label,
                marker_color=PALETTE[i % len(PALETTE)],
                boxpoints=False,
            )
        )
    positive = bool((frame["p05"] > 0).all())
    fig.update_layout(showlegend=False)
    fig.update_xaxes(
        type="log" if positive else "linear",
        dtick=1 if positive else None,
        tickformat=",.0f",
        title_text=f"predicted CLV{_money(currency)}, box = quartiles, whiskers = 5th–95th pct",
    )
    return _styled(fig, "Customer lifetime value by value tier", _rows_height(len(frame), 60))


def _without_prefix(tagline: str, name: str) -> str:
    """The tagline after the persona's name (taglines repeat it: "Bargain hunters, 35–44, …")."""
    if tagline.lower().startswith(name.lower()):
        tagline = tagline[len(name) :].lstrip(" ,;:–-")
    return tagline[:1].upper() + tagline[1:]


def _wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def personas_table(personas: pd.DataFrame, *, currency: str | None = None) -> go.Figure:
    """The discovered segments' personas as a table: who they are, how many, what they are worth.

    Columns: ``segment``, ``name``, ``tagline``, ``customers``, ``share`` (of the clustered
    base, 0–1), ``avg_clv`` (may be empty), ``traits`` (short texts separated by ``"; "``).
    Text is wrapped here: Plotly tables do not wrap a cell that holds line breaks.
    """
    _require(personas, ("segment", "name", "tagline", "customers", "share", "avg_clv", "traits"), "personas")
    who = [
        [f"<b>{line}</b>" for line in _wrapped(str(n), 34)] + _wrapped(_without_prefix(str(t), str(n)), 40)
        for n, t in zip(personas["name"], personas["tagline"], strict=True)
    ]
    traits = [
        [line for trait in str(ts).split("; ") if trait for line in _wrapped(f"• {trait}", 62)]
        for ts in personas["traits"]
    ]
    lines = [max(len(a), len(b), 1) for a, b in zip(who, traits, strict=True)]
    fig = go.Figure(
        go.Table(
            columnwidth=[110, 230, 90, 80, 380],
            header={
                "values": [
                    "Segment",
                    "Persona",
                    "Customers",
                    f"Avg CLV{_money(currency)}",
                    "What stands out",
                ],
                "fill_color": "#dbe9f6",
                "align": "left",
                "font": {"size": 13, "color": INK},
                "height": 30,
            },
            cells={
                "values": [
                    list(personas["segment"].astype(str)),
                    ["<br>".join(w) for w in who],
                    [
                        f"{int(c):,} ({s:.0%})"
                        for c, s in zip(personas["customers"], personas["share"], strict=True)
                    ],
                    ["–" if pd.isna(v) else f"{v:,.0f}" for v in personas["avg_clv"]],
                    ["<br>".join(t) or "–" for t in traits],
                ],
                "align": "left",
                "fill_color": "white",
                "line_color": GRID,
                "font": {"size": 12, "color": INK},
                "height": 20,
            },
        )
    )
    fig.update_layout(margin={"l": 10, "r": 10, "t": 60, "b": 10})
    height = 130 + sum(17 * n + 12 for n in lines)
    return _styled(fig, "Personas of the discovered segments", height)


# -- places ----------------------------------------------------------------------------------------
def coarsen_cells(
    cells: pd.DataFrame, *, detail: float = 120, max_cells: int = 2000
) -> tuple[pd.DataFrame, int]:
    """Merge H3 cells into parents until a hexagon is visible on the whole map; returns (cells, resolution).

    Columns in and out: ``h3_cell``, ``customers`` and any other summed column (``revenue``;
    text columns are dropped).  The resolution is the finest whose hexagon edge is at least
    1/``detail`` of the map's extent and that gives at most ``max_cells`` cells: a country-wide
    base at resolution 7 would be hundreds of invisible specks.
    """
    _require(cells, ("h3_cell", "customers"), "coarsen_cells")
    numeric = cells[["h3_cell", *cells.drop(columns="h3_cell").select_dtypes("number").columns]]
    if numeric.empty:
        return numeric, 0
    resolution = h3.get_resolution(str(numeric["h3_cell"].iloc[0]))
    extent = _extent_km(numeric["h3_cell"])
    parents = numeric["h3_cell"].astype(str).tolist()
    while resolution > 0 and (
        h3.average_hexagon_edge_length(resolution, unit="km") < extent / detail
        or len(set(parents)) > max_cells
    ):
        resolution -= 1
        parents = [h3.cell_to_parent(c, resolution) for c in parents]
    out = numeric.assign(h3_cell=parents).groupby("h3_cell", as_index=False).sum()
    return out.sort_values("customers", ascending=False).reset_index(drop=True), resolution


def _extent_km(cells: pd.Series) -> float:
    centres = [h3.cell_to_latlng(str(c)) for c in cells.unique()]
    lats, lngs = [c[0] for c in centres], [c[1] for c in centres]
    return float(h3.great_circle_distance((min(lats), min(lngs)), (max(lats), max(lngs)), unit="km"))


def city_labels(cells: pd.DataFrame, *, count: int = 10, spacing: float = 15) -> pd.DataFrame:
    """Where to write the names of the biggest cities on the map, without labels on top of each other.

    ``cells`` columns: ``h3_cell``, ``city``, ``customers`` (one row per cell and city).  Each
    city is placed at the customer-weighted centre of its cells; cities are taken largest first
    and one closer than 1/``spacing`` of the map's extent to a placed label is skipped (a
    suburb next to its city).  Returns columns ``city``, ``lat``, ``lon``, ``customers``.
    """
    _require(cells, ("h3_cell", "city", "customers"), "city_labels")
    named = cells[cells["city"].notna() & (cells["city"].astype(str) != "")]
    if named.empty:
        return pd.DataFrame(columns=["city", "lat", "lon", "customers"])
    centres = np.array([h3.cell_to_latlng(str(c)) for c in named["h3_cell"]])
    weights = named["customers"].to_numpy(dtype=float)
    frame = (
        pd.DataFrame(
            {
                "city": named["city"].astype(str).to_numpy(),
                "w": weights,
                "wlat": centres[:, 0] * weights,
                "wlon": centres[:, 1] * weights,
            }
        )
        .groupby("city", as_index=False)
        .sum()
    )
    frame = frame.assign(lat=frame["wlat"] / frame["w"], lon=frame["wlon"] / frame["w"], customers=frame["w"])
    frame = frame.sort_values(["customers", "city"], ascending=[False, True])
    min_km = _extent_km(named["h3_cell"]) / spacing
    placed: list[tuple[str, float, float, float]] = []
    for row in frame.itertuples(index=False):
        if len(placed) == count:
            break
        if all(
            h3.great_circle_distance((row.lat, row.lon), (p[1], p[2]), unit="km") >= min_km for p in placed
        ):
            placed.append((row.city, row.lat, row.lon, row.customers))
    return pd.DataFrame(placed, columns=["city", "lat", "lon", "customers"])


def _class_edges(values: np.ndarray, classes: int) -> list[int]:
    """Integer class boundaries at quantiles of the counts (equal-count classes read best on skew)."""
    qs = np.quantile(values, np.linspace(0, 1, classes + 1))
    edges = sorted({int(math.floor(qs[0]))} | {int(math.ceil(q)) for q in qs[1:]})
    return edges if len(edges) > 1 else [edges[0], edges[0] + 1]


def customers_by_cell(
    cells: pd.DataFrame,
    stores: pd.DataFrame | None = None,
    *,
    places: pd.DataFrame | None = None,
    resolution: int | None = None,
) -> go.Figure:
    """Customers per H3 hexagon, shaded in count classes, with the stores on top; no map tiles.

    ``cells`` columns: ``h3_cell``, ``customers`` (optional ``revenue``); ``stores`` columns:
    ``store_id``, ``name``, ``lat``, ``lon``; ``places`` (from :func:`city_labels`) names the
    big cities, since there are no map tiles to show where things are.  Hexagons are
    ``h3.cell_to_boundary`` polygons on plain longitude/latitude axes, the latitude axis
    stretched by 1/cos(latitude) so shapes are not squashed.
    """
    _require(cells, ("h3_cell", "customers"), "customers_by_cell")
    fig = go.Figure()
    counts = cells["customers"].to_numpy(dtype=float)
    edges = _class_edges(counts, len(HEX_CLASSES)) if len(counts) else [0, 1]
    lats: list[float] = []
    boundaries = [h3.cell_to_boundary(str(c)) for c in cells["h3_cell"]]
    klass = np.clip(np.searchsorted(edges, counts, side="right") - 1, 0, len(edges) - 2)
    for k in range(len(edges) - 1):
        low, high = edges[k], edges[k + 1]
        last = k == len(edges) - 2
        in_class = np.flatnonzero(klass == k)
        if not len(in_class):
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        for i in in_class:
            ring = list(boundaries[i]) + [boundaries[i][0]]
            xs += [p[1] for p in ring] + [None]
            ys += [p[0] for p in ring] + [None]
            lats += [p[0] for p in ring]
        top = high if last else high - 1
        label = f"{low:,}" if top <= low else f"{low:,}–{top:,}"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                fill="toself",
                fillcolor=HEX_CLASSES[k % len(HEX_CLASSES)],
                line={"color": "white", "width": 0.5},
                name=label,
                hoverinfo="skip",
            )
        )
    if len(cells):
        centres = [h3.cell_to_latlng(str(c)) for c in cells["h3_cell"]]
        hover = [f"{int(n):,} customers" for n in cells["customers"]]
        if "revenue" in cells.columns:
            hover = [
                f"{h}<br>{r:,.0f} revenue" for h, r in zip(hover, cells["revenue"].fillna(0), strict=True)
            ]
        fig.add_trace(
            go.Scatter(
                x=[c[1] for c in centres],
                y=[c[0] for c in centres],
                mode="markers",
                marker={"size": 6, "opacity": 0},
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
            )
        )
    if places is not None and len(places):
        # Lifted a little above the city's centre, so the name is not written over its hexagons.
        lift = max((max(lats) - min(lats)) * 0.03, 0.01) if lats else 0.01
        fig.add_trace(
            go.Scatter(
                x=places["lon"],
                y=places["lat"] + lift,
                mode="text",
                text=list(places["city"]),
                textposition="top center",
                textfont={"size": 12, "color": INK, "shadow": "0 0 3px white", "weight": 600},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if stores is not None and len(stores):
        _require(stores, ("store_id", "name", "lat", "lon"), "customers_by_cell stores")
        fig.add_trace(
            go.Scatter(
                x=stores["lon"],
                y=stores["lat"],
                mode="markers",
                name="Store",
                marker={"symbol": "star", "size": 11, "color": ORANGE, "line": {"color": INK, "width": 0.8}},
                text=[f"{n or s}" for s, n in zip(stores["store_id"], stores["name"], strict=True)],
                hovertemplate="store %{text}<extra></extra>",
            )
        )
        lats += list(stores["lat"])
    mid = float(np.mean(lats)) if lats else 0.0
    fig.update_xaxes(title_text="longitude", showgrid=False, zeroline=False)
    fig.update_yaxes(
        title_text="latitude",
        showgrid=False,
        zeroline=False,
        scaleanchor="x",
        scaleratio=1 / max(math.cos(math.radians(mid)), 0.1),
    )
    fig.update_layout(
        legend={
            "title": {"text": "Customers per hexagon "},
            "orientation": "v",
            "x": 1.02,
            "xanchor": "left",
            "y": 1,
            "yanchor": "top",
        }
    )
    res = f" (H3 resolution {resolution})" if resolution is not None else ""
    return _styled(fig, f"Where customers live and where the stores are{res}", 620)


# -- campaigns -------------------------------------------------------------------------------------
def campaign_funnel(funnel: pd.DataFrame) -> go.Figure:
    """Assigned → delivered → opened → clicked → converted, one funnel per variant.

    Columns: ``variant``, ``assigned`` and any of ``delivered``, ``opened``, ``clicked``,
    ``conversions``; a stage with no numbers at all is left out.
    """
    _require(funnel, ("variant", "assigned"), "campaign_funnel")
    stages = [(c, label) for c, label in FUNNEL_STAGES if c in funnel.columns and funnel[c].notna().any()]
    fig = go.Figure()
    for i, row in enumerate(funnel.itertuples(index=False)):
        values = [getattr(row, c) for c, _ in stages]
        fig.add_trace(
            go.Funnel(
                name=str(row.variant),
                y=[label for _, label in stages],
                x=[0 if pd.isna(v) else int(v) for v in values],
                texttemplate="%{value:,}<br>%{percentInitial:.0%}",
                marker={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    return _styled(fig, "Campaign funnel by variant: from assignment to conversion", 420)


def lift_intervals(results: pd.DataFrame, *, lift_kind: str = "relative") -> go.Figure:
    """Lift over control per segment with its 95 % interval, raw and shrunk side by side.

    Columns: ``segment``, ``variant``, ``lift``, ``ci_low``, ``ci_high`` and optionally
    ``lift_shrunk``, ``shrunk_low``, ``shrunk_high`` (fractions: 0.12 = +12 %, relative or in
    conversion-rate points as ``lift_kind`` says).  Rows without a lift are left out.
    """
    _require(results, ("segment", "variant", "lift", "ci_low", "ci_high"), "lift_intervals")
    frame = results[results["lift"].notna()].iloc[::-1]
    labels = _arm_labels(frame)
    fig = go.Figure()
    series = [("lift", "ci_low", "ci_high", "Measured (raw)", BLUE)]
    if "lift_shrunk" in frame.columns and frame["lift_shrunk"].notna().any():
        series.append(("lift_shrunk", "shrunk_low", "shrunk_high", "Shrunk toward the campaign", ORANGE))
    for value, low, high, name, colour in series:
        fig.add_trace(
            go.Scatter(
                x=frame[value],
                y=labels,
                mode="markers",
                name=name,
                offsetgroup=name,
                orientation="h",
                marker={"color": colour, "size": 9},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": (frame[high] - frame[value]).tolist(),
                    "arrayminus": (frame[value] - frame[low]).tolist(),
                    "color": colour,
                    "thickness": 2,
                    "width": 4,
                },
                customdata=np.stack([frame[low], frame[high]], axis=-1),
                hovertemplate=f"%{{y}}<br>{name}: %{{x:.1%}} (95 % CI %{{customdata[0]:.1%}} to "
                "%{customdata[1]:.1%})<extra></extra>",
            )
        )
    fig.add_vline(x=0, line={"color": MUTED, "width": 1, "dash": "dash"})
    kind = "relative lift over control" if lift_kind == "relative" else "lift in conversion rate (points)"
    fig.update_layout(scattermode="group")
    fig.update_xaxes(
        tickformat=".0%" if lift_kind == "relative" else ".1%", title_text=f"{kind}, 95 % interval"
    )
    return _styled(fig, "Lift per segment with 95 % intervals: raw and shrunk", _rows_height(len(frame), 44))


def roi_by_segment(results: pd.DataFrame) -> go.Figure:
    """Return on investment per segment (green pays back, red loses money).

    Columns: ``segment``, ``variant``, ``roi`` ((incremental margin − cost) / cost; 0.5 = 50 %).
    """
    _require(results, ("segment", "variant", "roi"), "roi_by_segment")
    frame = results[results["roi"].notna()].sort_values("roi")
    fig = go.Figure(
        go.Bar(
            x=frame["roi"],
            y=_arm_labels(frame),
            orientation="h",
            marker_color=[GREEN if v >= 0 else RED for v in frame["roi"]],
            text=[f"{v:+.0%}" for v in frame["roi"]],
            textposition="auto",
            hovertemplate="%{y}: ROI %{x:.1%}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line={"color": MUTED, "width": 1})
    fig.update_xaxes(tickformat=".0%", title_text="ROI = (incremental gross margin − cost) / cost")
    return _styled(fig, "Return on investment by segment", _rows_height(len(frame)))


def budget_reallocation(results: pd.DataFrame, *, currency: str | None = None) -> go.Figure:
    """Spend this round against the recommended spend next round, per segment.

    Columns: ``segment``, ``variant``, ``budget_now``, ``budget_next``.
    """
    _require(results, ("segment", "variant", "budget_now", "budget_next"), "budget_reallocation")
    frame = results[results["budget_next"].notna()].iloc[::-1]
    labels = _arm_labels(frame)
    fig = go.Figure()
    # Next round first, so this round's bar sits on top of each pair; the legend is reversed to match.
    for column, name, colour in (
        ("budget_next", "Next round", BLUE),
        ("budget_now", "This round", "#9aa5b1"),
    ):
        fig.add_trace(
            go.Bar(
                x=frame[column],
                y=labels,
                orientation="h",
                name=name,
                marker_color=colour,
                text=[f"{v:,.0f}" for v in frame[column].fillna(0)],
                textposition="auto",
                hovertemplate=f"%{{y}}: %{{x:,.0f}}<extra>{name}</extra>",
            )
        )
    fig.update_layout(barmode="group", legend={"traceorder": "reversed"})
    fig.update_xaxes(title_text=f"budget{_money(currency)}")
    return _styled(fig, "Budget reallocation: this round vs next", _rows_height(len(frame), 48))


def campaign_charts(
    results: pd.DataFrame, *, lift_kind: str = "relative", currency: str | None = None
) -> dict[str, go.Figure]:
    """A campaign's figures by name — ``funnel``, ``lift``, ``roi``, ``reallocation`` — each only
    when its numbers exist: the one choice of figures the HTML report and the dashboard share.

    Columns: those of :class:`~micromarketing.measure.report.ArmResult` (one row per segment ×
    arm; the control arm is named :data:`CONTROL_ARM` and has no funnel, lift or ROI of its own;
    rows of segment :data:`WHOLE_CAMPAIGN` sum the others and stay out of the funnel).
    """
    treated = results[results["variant"] != CONTROL_ARM]
    by_segment = treated[treated["segment"] != WHOLE_CAMPAIGN]  # the campaign-wide rows would count twice
    drawn: dict[str, go.Figure] = {}
    if len(by_segment):
        stages = [c for c, _ in FUNNEL_STAGES if c in by_segment.columns]
        funnel = by_segment.groupby("variant", as_index=False)[stages].sum(min_count=1)
        drawn["funnel"] = campaign_funnel(funnel)
    lifts = treated[treated["lift"].notna()]
    if len(lifts):
        drawn["lift"] = lift_intervals(lifts, lift_kind=lift_kind)
    if treated["roi"].notna().any():
        drawn["roi"] = roi_by_segment(treated)
    if results["budget_next"].notna().any():
        drawn["reallocation"] = budget_reallocation(results, currency=currency or None)
    return drawn


# -- generic (the CLV validation report) -----------------------------------------------------------
def line_chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    vline: float | None = None,
    vline_label: str = "",
) -> go.Figure:
    """One line per named series over ``x``, with an optional dashed vertical marker."""
    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=list(x), y=list(ys), mode="lines", name=name, line={"width": 2}))
    if vline is not None:
        fig.add_vline(
            x=vline,
            line={"color": MUTED, "width": 1, "dash": "dash"},
            annotation_text=vline_label,
            annotation_position="top left",
        )
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text=ylabel)
    return _styled(fig, title, 420)


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str = "",
    ylabel: str = "",
) -> go.Figure:
    """Grouped bars: one group per category, one bar per named series."""
    fig = go.Figure()
    labels = [str(c) for c in categories]
    for name, ys in series.items():
        fig.add_trace(go.Bar(x=labels, y=list(ys), name=name))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=xlabel, type="category")
    fig.update_yaxes(title_text=ylabel)
    return _styled(fig, title, 420)
