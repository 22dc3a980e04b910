"""Self-contained HTML reports with Plotly charts: the workspace report and its campaign sections.

What it owns
------------
* :class:`Report`, the one report format every measurement writes (the CLV validation of
  :mod:`micromarketing.measure.clv_report` too): headings, paragraphs, key figures, tables and
  Plotly figures, rendered to one HTML file that works offline — plotly.js is inlined once in the
  ``<head>``, nothing is fetched (no CDN, no web fonts, no images).  Text goes through Jinja2
  autoescaping; chart data goes through Plotly's JSON serialiser, which escapes ``<``, ``>``
  and ``/``.
* :class:`ReportInputs` and :func:`gather_inputs`: the analytics numbers the sections draw,
  aggregated in the warehouse (counts, sums and quantiles in SQL; only small frames come back).
* :class:`CampaignResults`: the contract of the campaign sections (funnel, lift with intervals
  raw and shrunk, ROI, reallocation, sample-ratio check), one :class:`ArmResult` per segment and
  arm.  The measurement fills it; :func:`campaign_from_store` fills only what the operations
  store knows by counting (assigned, delivered) for a campaign that has not been measured.
* :func:`build_report` / :func:`write_report`: sections appear when their data exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import ibis
import jinja2
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from pydantic import BaseModel, Field
from sqlalchemy import and_, distinct, func, select

from micromarketing.errors import ConflictError, MicromarketingError, NotFoundError
from micromarketing.measure import charts
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

SRM_THRESHOLD = 0.001  # a sample-ratio-mismatch p-value below this flags the comparison
CONTROL_ARM = charts.CONTROL_ARM
WHOLE_CAMPAIGN = charts.WHOLE_CAMPAIGN
FUNNEL_CAPTION = "People reached at each stage, summed over segments; percentages are of those assigned."
LIFT_CAPTION = (
    "Dots are the lift over control, bars the 95 % intervals; an interval crossing the dashed zero line "
    "is not a proven effect. Shrunk estimates borrow strength from the whole campaign, which tames "
    "small segments."
)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 72rem; color: #1f2933; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d9e2ec; padding-bottom: .2rem; }
.subtitle { color: #52606d; margin-top: 0; }
.metrics { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
.metric { border: 1px solid #d9e2ec; border-radius: 6px; padding: .5rem .8rem; min-width: 8rem; }
.metric .label { font-size: .8rem; color: #52606d; }
.metric .value { font-size: 1.25rem; font-weight: 600; }
.note { border-left: 4px solid #d4a017; background: #fffbea; padding: .5rem .8rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
th, td { border: 1px solid #d9e2ec; padding: .3rem .6rem; text-align: right; }
th { background: #f0f4f8; } td:first-child, th:first-child, td.text, th.text { text-align: left; }
caption { caption-side: bottom; font-size: .85rem; color: #52606d; text-align: left; }
figure { margin: 1rem 0; }
figcaption { font-size: .85rem; color: #52606d; }
footer { margin-top: 3rem; font-size: .8rem; color: #829ab1; }
</style>
{% if plotlyjs %}<script>{{ plotlyjs }}</script>{% endif %}
</head>
<body>
<h1>{{ title }}</h1>
{% if subtitle %}<p class="subtitle">{{ subtitle }}</p>{% endif %}
{% for block in blocks %}
{% if block.kind == "heading" %}<h2>{{ block.text }}</h2>
{% elif block.kind == "paragraph" %}<p{% if block.note %} class="note"{% endif %}>{{ block.text }}</p>
{% elif block.kind == "metrics" %}<div class="metrics">{% for label, value in block.entries %}
<div class="metric"><div class="label">{{ label }}</div>
<div class="value">{{ value }}</div></div>{% endfor %}</div>
{% elif block.kind == "table" %}<table>
{% if block.caption %}<caption>{{ block.caption }}</caption>{% endif %}
<thead><tr>{% for c, number in block.columns %}
<th{% if not number %} class="text"{% endif %}>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in block.rows %}<tr>{% for cell, number in row %}
<td{% if not number %} class="text"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% elif block.kind == "figure" %}<figure>{{ block.html }}
{% if block.caption %}<figcaption>{{ block.caption }}</figcaption>{% endif %}</figure>
{% endif %}
{% endfor %}
<footer>Generated by micromarketing on {{ generated_at }}.</footer>
</body>
</html>
"""

_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_template = _env.from_string(_TEMPLATE)


def format_value(value: Any, digits: int = 4) -> str:
    """A compact display string: integers with separators, floats to ``digits`` decimals (scientific when tiny or huge)."""  # noqa: E501
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if value != 0 and (abs(value) >= 1e9 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:,.{digits}f}"
    return str(value)


def chart_html(fig: go.Figure, div_id: str) -> Markup:
    """A figure as a ``<div>`` and the script that draws it, for a page that loads plotly.js once.

    The report inlines the library in its ``<head>``; the dashboard can serve
    ``plotly/package_data/plotly.min.js`` itself and embed the same divs.
    """
    html = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_width="100%",
        default_height=f"{fig.layout.height or 450}px",
    )
    return Markup(html)


def _is_number(value: Any) -> bool:
    """Numbers align right in tables; text (and a formatted amount given as text) reads better left."""
    if isinstance(value, str):
        return bool(value) and (value[0].isdigit() or value[0] in "+-–") and not value[-1].isalpha()
    return isinstance(value, int | float) and not isinstance(value, bool)


def money(value: Any) -> str:
    """An amount to the unit with separators (report tables show money without cents)."""
    return "–" if value is None or pd.isna(value) else f"{float(value):,.0f}"


@dataclass
class Report:
    """An HTML report assembled section by section and rendered to one self-contained file."""

    title: str
    subtitle: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sections(self) -> list[str]:
        """The section headings, in order."""
        return [b["text"] for b in self.blocks if b["kind"] == "heading"]

    @property
    def chart_count(self) -> int:
        return sum(1 for b in self.blocks if b["kind"] == "figure")

    def heading(self, text: str) -> Report:
        """Start a section."""
        self.blocks.append({"kind": "heading", "text": text})
        return self

    def paragraph(self, text: str, *, note: bool = False) -> Report:
        """A paragraph of plain text (escaped); ``note`` highlights it as a warning."""
        self.blocks.append({"kind": "paragraph", "text": text, "note": note})
        return self

    def metrics(self, items: Mapping[str, Any]) -> Report:
        """A row of labelled key figures."""
        self.blocks.append({"kind": "metrics", "entries": [(k, format_value(v)) for k, v in items.items()]})
        return self

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> Report:
        """A table; numbers are formatted with :func:`format_value`."""
        self.blocks.append(
            {
                "kind": "table",
                # A column is right-aligned, header included, when every cell in it is a number.
                "columns": [
                    (c, bool(rows) and all(_is_number(row[i]) or row[i] == "–" for row in rows))
                    for i, c in enumerate(columns)
                ],
                "rows": [[(format_value(c), _is_number(c)) for c in row] for row in rows],
                "caption": caption,
            }
        )
        return self

    def figure(self, fig: go.Figure, caption: str = "") -> Report:
        """A Plotly figure (drawn by the plotly.js inlined once in the page)."""
        self.blocks.append({"kind": "figure", "figure": fig, "caption": caption})
        return self

    def line_chart(
        self,
        x: Sequence[float],
        series: Mapping[str, Sequence[float]],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        caption: str = "",
        vline: float | None = None,
        vline_label: str = "",
    ) -> Report:
        """A line chart of named series over ``x`` (:func:`charts.line_chart`), optional dashed marker."""
        fig = charts.line_chart(
            x, series, title=title, xlabel=xlabel, ylabel=ylabel, vline=vline, vline_label=vline_label
        )
        return self.figure(fig, caption)

    def bar_chart(
        self,
        categories: Sequence[str],
        series: Mapping[str, Sequence[float]],
        *,
        title: str = "",
        xlabel: str = "",
        ylabel: str = "",
        caption: str = "",
    ) -> Report:
        """Grouped bars, one group per category and one bar per series (:func:`charts.grouped_bars`)."""
        fig = charts.grouped_bars(categories, series, title=title, xlabel=xlabel, ylabel=ylabel)
        return self.figure(fig, caption)

    def render(self) -> str:
        """The complete HTML document."""
        blocks: list[dict[str, Any]] = []
        n = 0
        for block in self.blocks:
            if block["kind"] == "figure":
                n += 1
                block = {**block, "html": chart_html(block["figure"], f"chart-{n}")}
            blocks.append(block)
        return _template.render(
            title=self.title,
            subtitle=self.subtitle,
            blocks=blocks,
            plotlyjs=Markup(get_plotlyjs()) if n else "",
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )

    def write(self, path: str | Path) -> Path:
        """Render and write the report to ``path`` (UTF-8); returns the path.

        A path that cannot be written (a directory, a parent that is a file, no permission)
        raises :class:`ConflictError` naming it.
        """
        out = Path(path)
        html = self.render()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise ConflictError(f"{out}: cannot write the report: {exc.strerror or exc}") from None
        return out


# -- the campaign contract -----------------------------------------------------------------------
class ArmResult(BaseModel):
    """One segment × arm of a campaign, as the campaign sections of the report read it.

    ``variant`` is the arm (``"control"`` or a variant's name).  Counts are people.  ``lift`` and
    its interval are fractions over control (relative, or conversion-rate points: see
    :attr:`CampaignResults.lift_kind`), raw and shrunk toward the campaign's overall lift;
    ``roi`` is (incremental gross margin − cost) / cost; ``budget_now`` / ``budget_next`` are
    this round's spend and the recommended spend, ``reason`` the words explaining the shift;
    ``srm_p`` is the sample-ratio-mismatch p-value of this arm's comparison with control.
    Everything after ``assigned`` is optional: a section is drawn when its numbers exist.
    """

    segment: str
    variant: str
    assigned: int = Field(ge=0)
    delivered: int | None = Field(default=None, ge=0)
    opened: int | None = Field(default=None, ge=0)
    clicked: int | None = Field(default=None, ge=0)
    conversions: int | None = Field(default=None, ge=0)
    lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    lift_shrunk: float | None = None
    shrunk_low: float | None = None
    shrunk_high: float | None = None
    roi: float | None = None
    budget_now: float | None = None
    budget_next: float | None = None
    reason: str | None = None
    srm_p: float | None = Field(default=None, ge=0, le=1)


class CampaignResults(BaseModel):
    """What the campaign sections of a report draw (see :class:`ArmResult` for each row)."""

    campaign: str
    status: str | None = None
    currency: str | None = None
    lift_kind: Literal["relative", "absolute"] = "relative"
    arms: list[ArmResult]

    def frame(self) -> pd.DataFrame:
        """One row per segment × arm with every column of :class:`ArmResult` (missing = NaN)."""
        columns = list(ArmResult.model_fields)
        return pd.DataFrame([a.model_dump() for a in self.arms], columns=columns)

    def totals(self) -> dict[str, int]:
        """People assigned and in control, and (when measured) delivered and converted, summed
        over the segments' arms (not the campaign-wide ``"all"`` rows, which would count everyone
        twice): the figures above a campaign's charts."""
        frame = self.frame()
        frame = frame[frame["segment"] != WHOLE_CAMPAIGN]
        totals = {"assigned": int(frame["assigned"].sum()),
                  "in control": int(frame.loc[frame["variant"] == CONTROL_ARM, "assigned"].sum())}
        for column in ("delivered", "conversions"):
            if frame[column].notna().any():
                totals[column] = int(frame[column].fillna(0).sum())
        return totals


def from_measurement(measurement: Any, allocation: Any | None = None) -> CampaignResults:
    """The report's campaign contract from the measurement's result models (read by attribute).

    Reads, per arm of ``measurement.arms``: ``segment``, ``arm``, ``assigned``, ``delivered``,
    ``opens``, ``clicks``, ``conversions``, ``roi``; per comparison of
    ``measurement.comparisons`` (segment × variant against control; ``"all"`` is skipped):
    ``srm.p_value`` and the conversion lift's ``relative``, ``relative_interval``,
    ``relative_shrunk`` and ``relative_shrunk_interval``; per arm of ``allocation.arms``:
    ``segment``, ``variant``, ``current_share``, ``share`` (of ``allocation.budget``) and
    ``explanation``.  Attributes are read, not imported, so this module does not depend on the
    measurement's classes.
    """
    lifts = {(c.segment, c.treatment): c for c in measurement.comparisons if c.segment != "all"}
    budgets = {}
    if allocation is not None:
        budgets = {
            (a.segment, a.variant): (
                a.current_share * allocation.budget,
                a.share * allocation.budget,
                a.explanation,
            )
            for a in allocation.arms
        }
    arms = []
    for kpi in measurement.arms:
        comparison = lifts.get((kpi.segment, kpi.arm))
        conversion = comparison.conversion if comparison is not None else None
        raw = conversion.relative_interval if conversion is not None else None
        shrunk = conversion.relative_shrunk_interval if conversion is not None else None
        now, nxt, why = budgets.get((kpi.segment, kpi.arm), (None, None, None))
        arms.append(
            ArmResult(
                segment=kpi.segment,
                variant=kpi.arm,
                assigned=kpi.assigned,
                delivered=None if kpi.arm == CONTROL_ARM else kpi.delivered,
                opened=None if kpi.arm == CONTROL_ARM else kpi.opens,
                clicked=None if kpi.arm == CONTROL_ARM else kpi.clicks,
                conversions=kpi.conversions,
                lift=conversion.relative if conversion is not None else None,
                ci_low=raw.low if raw is not None else None,
                ci_high=raw.high if raw is not None else None,
                lift_shrunk=conversion.relative_shrunk if conversion is not None else None,
                shrunk_low=shrunk.low if shrunk is not None else None,
                shrunk_high=shrunk.high if shrunk is not None else None,
                roi=kpi.roi,
                budget_now=now,
                budget_next=nxt,
                reason=why,
                srm_p=comparison.srm.p_value if comparison is not None else None,
            )
        )
    return CampaignResults(
        campaign=measurement.campaign, status=measurement.status, currency=measurement.currency, arms=arms
    )


def campaign_from_store(ctx: StoreContext, name: str) -> CampaignResults:
    """The counts the operations store holds for campaign ``name``: assigned and delivered per arm.

    Delivered counts people with a non-test message in state ``sent``.  No attribution happens
    here: opens, clicks, conversions, lift, ROI and budgets come from the measurement.
    """
    with ctx.ops.session() as s:
        camp = s.scalar(select(Campaign).where(Campaign.name == name))
        if camp is None:
            from micromarketing.segments.rules import did_you_mean

            known = list(s.scalars(select(Campaign.name)))
            raise NotFoundError(f"no campaign named {name!r}{did_you_mean(name, known)}")
        key = (Assignment.segment, Assignment.arm)
        assigned = s.execute(
            select(*key, func.count()).where(Assignment.campaign_id == camp.id).group_by(*key)
        ).all()
        delivered = dict(
            ((seg, arm), int(n))
            for seg, arm, n in s.execute(
                select(*key, func.count(distinct(OutboxMessage.customer_id)))
                .join(
                    OutboxMessage,
                    and_(
                        OutboxMessage.campaign_id == Assignment.campaign_id,
                        OutboxMessage.customer_id == Assignment.customer_id,
                    ),
                )
                .where(
                    Assignment.campaign_id == camp.id,
                    OutboxMessage.state == "sent",
                    OutboxMessage.is_test.is_(False),
                )
                .group_by(*key)
            ).all()
        )
        arms = [
            ArmResult(
                segment=seg,
                variant=arm,
                assigned=int(n),
                delivered=None if arm == CONTROL_ARM else delivered.get((seg, arm), 0),
            )
            for seg, arm, n in sorted(assigned)
        ]
        return CampaignResults(
            campaign=camp.name, status=camp.status, currency=ctx.settings.ingest.currency, arms=arms
        )


# -- the analytics inputs --------------------------------------------------------------------------
@dataclass
class ReportInputs:
    """The small frames the analytics sections draw; ``None`` where the workspace has no such data.

    Columns are those of the chart functions in :mod:`micromarketing.measure.charts`:
    ``segments`` (segment, kind, customers, revenue, avg_clv, optional label), ``rfm_segments`` (segment,
    customers, revenue), ``rfm_grid`` (r_score, f_score, customers, revenue), ``clv_tiers``
    (value_tier, customers, p05, q1, median, q3, p95, mean), ``personas`` (segment, name,
    tagline, customers, share, avg_clv, traits), ``cells`` (h3_cell, customers, revenue) and
    ``stores`` (store_id, name, lat, lon); ``cells`` may repeat a cell once per ``city``
    (the map's labels).
    """

    workspace: str
    as_of: date | None = None
    currency: str | None = None
    headline: dict[str, Any] = field(default_factory=dict)
    segments: pd.DataFrame | None = None
    rfm_segments: pd.DataFrame | None = None
    rfm_grid: pd.DataFrame | None = None
    clv_tiers: pd.DataFrame | None = None
    personas: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None
    stores: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def gather_inputs(ctx: StoreContext) -> ReportInputs:
    """Aggregate what the analytics sections need from the warehouse and the segment store."""
    wh = ctx.warehouse
    inputs = ReportInputs(workspace=ctx.root.name, currency=ctx.settings.ingest.currency)
    if wh.has_table("customers"):
        inputs.headline["customers"] = int(ctx.table("customers").count().execute())
    if wh.has_table("stores"):
        stores = ctx.table("stores").select("store_id", "name", "lat", "lon").execute()
        inputs.headline["stores"] = len(stores)
        inputs.stores = stores if len(stores) else None
    if wh.has_table("profiles") and int(ctx.table("profiles").count().execute()):
        _gather_profiles(ctx, inputs)
    _gather_segments(ctx, inputs)
    return inputs


def _gather_profiles(ctx: StoreContext, inputs: ReportInputs) -> None:
    p = ctx.table("profiles")
    head = p.aggregate(
        as_of=p.as_of.max(),
        buyers=(p.frequency > 0).sum(),
        revenue=p.monetary.sum(),
    ).execute()
    inputs.as_of = pd.Timestamp(head["as_of"].iloc[0]).date()
    if inputs.currency is None and ctx.warehouse.has_table("transactions"):
        from micromarketing.profiles.currency import single_currency

        inputs.currency = single_currency(ctx.table("transactions"), inputs.as_of)
    inputs.headline["customers with orders"] = int(head["buyers"].iloc[0])
    inputs.headline["revenue"] = _money(head["revenue"].iloc[0], inputs.currency)

    from micromarketing.profiles.summary import rfm_summary

    rfm = rfm_summary(ctx)
    inputs.rfm_segments = rfm.rename(columns={"rfm_segment": "segment"})
    scored = p.filter(p.r_score.notnull() & p.f_score.notnull())
    inputs.rfm_grid = (
        scored.group_by(["r_score", "f_score"])
        .aggregate(customers=scored.count(), revenue=scored.monetary.sum())
        .execute()
    )
    if "value_tier" in p.columns:
        valued = p.filter(p.value_tier.notnull() & p.clv.notnull())
        v = valued.clv
        tiers = (
            valued.group_by("value_tier")
            .aggregate(
                customers=valued.count(),
                p05=v.quantile(0.05),
                q1=v.quantile(0.25),
                median=v.quantile(0.5),
                q3=v.quantile(0.75),
                p95=v.quantile(0.95),
                mean=v.mean(),
            )
            .execute()
        )
        if len(tiers):
            inputs.clv_tiers = tiers
            inputs.headline["average CLV"] = _money(valued.clv.mean().execute(), inputs.currency)
    located = p.filter(p.h3_cell.notnull())
    if ctx.warehouse.has_table("customers"):
        c = ctx.table("customers").select("customer_id", "city")
        located = located.left_join(c, located.customer_id == c.customer_id)
        keys = ["h3_cell", "city"]
    else:
        keys = ["h3_cell"]
    cells = located.group_by(keys).aggregate(customers=located.count(), revenue=located.monetary.sum())
    frame = cells.execute()
    if len(frame):
        inputs.cells = frame


def _gather_segments(ctx: StoreContext, inputs: ReportInputs) -> None:
    """Size, revenue and average CLV of every active segment (one query over all of them)."""
    from micromarketing.segments.definitions import Segments

    segs = Segments(ctx)
    infos = [i for i in segs.list() if not i.details.get("retired")]
    if not infos:
        return
    labelled: list[ibis.Table] = []
    kept = []
    for info in infos:
        try:
            members = segs.member_table(info.name).select("customer_id")
        except MicromarketingError as exc:
            inputs.notes.append(f"segment {info.name!r} left out: {exc}")
            continue
        labelled.append(members.mutate(segment=ibis.literal(info.name)))
        kept.append(info)
    if not kept:
        return
    members = ibis.union(*labelled) if len(labelled) > 1 else labelled[0]
    if ctx.warehouse.has_table("profiles"):
        p = ctx.table("profiles")
        joined = members.left_join(
            p.select("customer_id", "monetary", *(["clv"] if "clv" in p.columns else [])),
            members.customer_id == p.customer_id,
        )
        clv = joined.clv.mean() if "clv" in p.columns else ibis.null().cast("float64")
        frame = (
            joined.group_by("segment")
            .aggregate(customers=joined.count(), revenue=joined.monetary.sum(), avg_clv=clv)
            .execute()
        )
    else:
        frame = members.group_by("segment").aggregate(customers=members.count()).execute()
        frame = frame.assign(revenue=0.0, avg_clv=None)
    by_name = frame.set_index("segment")
    rows = [
        {
            "segment": i.name,
            "kind": i.kind,
            **by_name.loc[i.name, ["customers", "revenue", "avg_clv"]].to_dict(),
        }
        if i.name in by_name.index
        else {"segment": i.name, "kind": i.kind, "customers": 0, "revenue": 0.0, "avg_clv": None}
        for i in kept
    ]
    inputs.segments = pd.DataFrame(rows).assign(
        label=[
            f"{i.name}: {i.description}" if i.kind == "discovered" and i.description else i.name for i in kept
        ]
    )
    inputs.headline["segments"] = len(rows)
    personas = [_persona_row(i) for i in kept if i.kind == "discovered" and i.details.get("persona")]
    if personas:
        inputs.personas = pd.DataFrame(personas)


def _persona_row(info: Any) -> dict[str, Any]:
    persona = info.details["persona"]
    traits = [t.get("text", "") for t in persona.get("traits", [])][:3]
    return {
        "segment": info.name,
        "name": persona.get("name", info.name),
        "tagline": persona.get("tagline", ""),
        "customers": int(persona.get("size", info.size or 0)),
        "share": float(persona.get("share", 0.0)),
        "avg_clv": persona.get("avg_clv"),
        "traits": "; ".join(t for t in traits if t),
    }


# -- assembling --------------------------------------------------------------------------------
def analytics_report(inputs: ReportInputs, campaign: CampaignResults | None = None) -> Report:
    """The report of ``inputs`` (and of ``campaign`` when given), each section only with its data."""
    when = f"profiles as of {inputs.as_of}" if inputs.as_of else "no profiles yet"
    title = f"Campaign report: {campaign.campaign}" if campaign else "Customer and segment report"
    rep = Report(
        title=title, subtitle=f"Workspace {inputs.workspace}; {when}; currency {inputs.currency or '–'}"
    )
    if campaign is not None:
        add_campaign_sections(rep, campaign)
    if inputs.headline:
        rep.heading("At a glance").metrics(inputs.headline)
    cur = inputs.currency
    if inputs.segments is not None:
        rep.heading("Segments")
        rep.figure(
            charts.segment_sizes(inputs.segments, title="Your segments: size and revenue", currency=cur),
            caption="Members of each stored segment (rule and discovered) and the revenue they "
            "brought so far.",
        )
        rep.table(
            ["segment", "kind", "customers", "revenue", "average CLV"],
            [
                [r.segment, r.kind, int(r.customers), money(r.revenue), money(r.avg_clv)]
                for r in inputs.segments.itertuples()
            ],
        )
    for note in inputs.notes:
        rep.paragraph(note, note=True)
    if inputs.rfm_grid is not None and len(inputs.rfm_grid):
        rep.heading("Recency, frequency, monetary value")
        rep.figure(
            charts.rfm_heatmap(inputs.rfm_grid, currency=cur),
            caption="Customers with orders by recency score (rows) and frequency score (columns); "
            "top right are the recent, frequent buyers.",
        )
    if inputs.rfm_segments is not None and len(inputs.rfm_segments):
        rep.figure(
            charts.segment_sizes(inputs.rfm_segments, title="RFM segments: size and revenue", currency=cur),
            caption="The named cells of the RFM grid.",
        )
    if inputs.clv_tiers is not None:
        rep.heading("Customer lifetime value")
        rep.figure(
            charts.clv_by_tier(inputs.clv_tiers, currency=cur),
            caption="Predicted CLV (BG/NBD + Gamma-Gamma) per value tier; tiers rank "
            "customers by CLV.",
        )
    if inputs.personas is not None:
        rep.heading("Personas")
        rep.figure(charts.personas_table(inputs.personas, currency=cur))
    if inputs.cells is not None:
        cells, resolution = charts.coarsen_cells(inputs.cells)
        rep.heading("Where customers live")
        places = charts.city_labels(inputs.cells) if "city" in inputs.cells.columns else None
        rep.figure(
            charts.customers_by_cell(cells, inputs.stores, places=places, resolution=resolution),
            caption=f"{int(inputs.cells['customers'].sum()):,} located customers in {len(cells):,} "
            f"H3 hexagons{_unlocated(inputs)}; stars are stores. Zoom in with the mouse.",
        )
    return rep


def add_campaign_sections(rep: Report, campaign: CampaignResults) -> Report:
    """Funnel, sample-ratio check, lift (raw and shrunk), ROI and reallocation, when each exists."""
    frame = campaign.frame()
    rep.heading(f"Campaign {campaign.campaign}")
    figures: dict[str, Any] = dict(campaign.totals())
    if campaign.status:
        figures["status"] = campaign.status
    rep.metrics(figures)
    if frame["srm_p"].notna().any():
        flagged = frame[frame["srm_p"] < SRM_THRESHOLD]
        if len(flagged):
            names = ", ".join(f"{r.segment} · {r.variant} (p = {r.srm_p:.2g})" for r in flagged.itertuples())
            rep.paragraph(
                f"Sample ratio mismatch: the arms are not the sizes planned for {names}. "
                "Their lifts below are not trustworthy until the assignment is explained.",
                note=True,
            )
        else:
            rep.paragraph(
                f"Sample ratio check: every comparison matches its planned split (p ≥ {SRM_THRESHOLD:g})."
            )
    drawn = charts.campaign_charts(frame, lift_kind=campaign.lift_kind, currency=campaign.currency)
    if "funnel" in drawn:
        rep.figure(drawn["funnel"], caption=FUNNEL_CAPTION)
    rep.table(
        ["segment", "arm", "assigned", "delivered", "conversions", "conversion rate"],
        [
            [
                r.segment,
                r.variant,
                int(r.assigned),
                _count(r.delivered),
                _count(r.conversions),
                _rate(r.conversions, r.assigned),
            ]
            for r in frame.itertuples()
        ],
    )
    if "lift" in drawn:
        rep.figure(drawn["lift"], caption=LIFT_CAPTION)
    if "roi" in drawn:
        rep.figure(drawn["roi"])
    if "reallocation" in drawn:
        rep.figure(drawn["reallocation"])
        reasons = frame[frame["reason"].notna()]
        if len(reasons):
            rep.table(
                ["segment", "arm", "this round", "next round", "why"],
                [
                    [r.segment, r.variant, money(r.budget_now), money(r.budget_next), r.reason]
                    for r in reasons.itertuples()
                ],
            )
    return rep


def _unlocated(inputs: ReportInputs) -> str:
    total = inputs.headline.get("customers")
    located = int(inputs.cells["customers"].sum()) if inputs.cells is not None else 0
    missing = total - located if isinstance(total, int) else 0
    return f" ({missing:,} without a location are not drawn)" if missing > 0 else ""


def _money(value: Any, currency: str | None) -> str:
    amount = 0.0 if value is None or pd.isna(value) else float(value)
    return f"{amount:,.0f} {currency}" if currency else f"{amount:,.0f}"


def _count(value: Any) -> int | str:
    return "–" if value is None or pd.isna(value) else int(value)


def _rate(conversions: Any, assigned: int) -> str:
    if conversions is None or pd.isna(conversions) or not assigned:
        return "–"
    return f"{conversions / assigned:.2%}"


def build_report(source: StoreContext | ReportInputs, campaign: CampaignResults | str | None = None) -> str:
    """The HTML of the workspace report, with the campaign's sections first when one is given.

    ``source`` is a workspace context (the numbers are gathered from it) or ready
    :class:`ReportInputs`; ``campaign`` is measured results, or a campaign name whose counts are
    read from the context's operations store.
    """
    return _assemble(source, campaign)[0].render()


def write_report(
    path: str | Path, source: StoreContext | ReportInputs, campaign: CampaignResults | str | None = None
) -> ReportFile:
    """Write :func:`build_report` to ``path`` and describe what was written."""
    rep, results = _assemble(source, campaign)
    out = rep.write(path)
    return ReportFile(
        path=str(out),
        size_bytes=out.stat().st_size,
        sections=rep.sections,
        charts=rep.chart_count,
        campaign=results.campaign if results is not None else None,
    )


class ReportFile(BaseModel):
    """A report written to disk: where, how big, which sections and how many charts."""

    path: str
    size_bytes: int
    sections: list[str]
    charts: int
    campaign: str | None = None


def _assemble(
    source: StoreContext | ReportInputs, campaign: CampaignResults | str | None
) -> tuple[Report, CampaignResults | None]:
    if isinstance(campaign, str):
        if not isinstance(source, StoreContext):
            raise TypeError("a campaign given by name needs a workspace context to read it from")
        campaign = campaign_from_store(source, campaign)
    inputs = source if isinstance(source, ReportInputs) else gather_inputs(source)
    return analytics_report(inputs, campaign), campaign
