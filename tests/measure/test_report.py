"""The HTML reports: self-contained files, numbers that match the warehouse, charts that match the data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from micromarketing import Workspace
from micromarketing.cli.main import app
from micromarketing.datasets import generate
from micromarketing.measure import charts
from micromarketing.measure.report import (
    ArmResult,
    CampaignResults,
    Report,
    ReportInputs,
    build_report,
    campaign_from_store,
    format_value,
    from_measurement,
    gather_inputs,
    write_report,
)
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

PLOT_DIV = 'class="plotly-graph-div"'


def campaign_results(
    name: str = "spring", segments: tuple[str, ...] = ("lapsed", "loyal", "young")
) -> CampaignResults:
    """Three segments × (control, two variants) with every optional number filled."""
    arms = []
    for i, seg in enumerate(segments):
        arms.append(
            ArmResult(segment=seg, variant="control", assigned=100 + i, conversions=5 + i, srm_p=None)
        )
        for j, variant in enumerate(("A", "B")):
            lift = 0.05 * (i + 1) - 0.04 * j
            arms.append(
                ArmResult(
                    segment=seg,
                    variant=variant,
                    assigned=900 + 10 * i,
                    delivered=880 + 10 * i - j,
                    opened=400 + i,
                    clicked=120 + i,
                    conversions=60 + i + j,
                    lift=lift,
                    ci_low=lift - 0.08,
                    ci_high=lift + 0.1,
                    lift_shrunk=lift * 0.6,
                    shrunk_low=lift * 0.6 - 0.05,
                    shrunk_high=lift * 0.6 + 0.06,
                    roi=0.4 * i - 0.3 * j - 0.2,
                    budget_now=1000.0,
                    budget_next=1000.0 + 300 * i - 250 * j,
                    reason=f"{seg}/{variant}: ROI {'up' if i else 'down'}",
                    srm_p=0.5 if i else 0.0004,
                )
            )
    return CampaignResults(campaign=name, status="finished", currency="EUR", arms=arms)


def report_inputs() -> ReportInputs:
    """Every analytics section's data, built by hand (no workspace)."""
    rng = np.random.default_rng(3)
    cells = [
        h3.latlng_to_cell(48.85 + rng.normal(0, 0.05), 2.35 + rng.normal(0, 0.08), 7) for _ in range(300)
    ]
    cells += [
        h3.latlng_to_cell(45.76 + rng.normal(0, 0.04), 4.84 + rng.normal(0, 0.05), 7) for _ in range(120)
    ]
    city = ["Paris"] * 300 + ["Lyon"] * 120
    frame = pd.DataFrame({"h3_cell": cells, "city": city, "customers": 1, "revenue": rng.gamma(2, 50, 420)})
    frame = frame.groupby(["h3_cell", "city"], as_index=False).sum()
    grid = pd.DataFrame(
        [
            {"r_score": r, "f_score": f, "customers": 10 * r + f, "revenue": 100.0 * r * f}
            for r in range(1, 6)
            for f in range(1, 6)
        ]
    )
    return ReportInputs(
        workspace="hand-made",
        currency="EUR",
        headline={"customers": 420},
        segments=pd.DataFrame(
            {
                "segment": ["lapsed", "loyal"],
                "kind": ["rule", "discovered"],
                "customers": [120, 80],
                "revenue": [5000.0, 9000.0],
                "avg_clv": [40.0, None],
            }
        ),
        rfm_segments=pd.DataFrame(
            {"segment": ["champions", "lost"], "customers": [50, 70], "revenue": [9e3, 1e3]}
        ),
        rfm_grid=grid,
        clv_tiers=pd.DataFrame(
            {
                "value_tier": ["rest", "top_1", "top_10", "top_50"],
                "customers": [210, 4, 38, 168],
                "p05": [1.0, 800, 300, 60],
                "q1": [5.0, 900, 330, 70],
                "median": [10.0, 1000, 380, 85],
                "q3": [20.0, 1200, 420, 100],
                "p95": [40.0, 1500, 500, 140],
                "mean": [14.0, 1050, 390, 88],
            }
        ),
        personas=pd.DataFrame(
            {
                "segment": ["discovered_01"],
                "name": ["Bargain hunters"],
                "tagline": ["Bargain hunters, 35–44"],
                "customers": [80],
                "share": [0.19],
                "avg_clv": [36.0],
                "traits": ["interest deals: 51%; age 35–44"],
            }
        ),
        cells=frame,
        stores=pd.DataFrame(
            {
                "store_id": ["S1", "S2"],
                "name": ["Châtelet", "Part-Dieu"],
                "lat": [48.86, 45.76],
                "lon": [2.347, 4.86],
            }
        ),
    )


# -- the file ----------------------------------------------------------------------------------------
def test_report_is_self_contained_and_escapes_text(tmp_path):
    rep = Report(title="Lift <test>", subtitle="A & B")
    rep.heading("Numbers").metrics({"customers": 12345, "lift": 0.1234567, "missing": float("nan")})
    rep.paragraph("<script>alert(1)</script>")
    rep.table(["segment", "value"], [["<b>x</b>", 1.5], ["y", 2]], caption="values")
    rep.figure(charts.line_chart([1, 2, 3], {"actual": [1, 2, 4]}, title="t", vline=2), caption="custom")
    rep.figure(charts.grouped_bars(["0", "1"], {"a": [1, 2], "b": [2, 3]}, title="</script><b>bars"))
    path = rep.write(tmp_path / "sub" / "r.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "Lift &lt;test&gt;" in html and "A &amp; B" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "</script><b>bars" not in html  # chart text is JSON-escaped inside the script
    assert html.count(PLOT_DIV) == 2 and html.count("plotly.js v") == 1  # plotly.js inlined once
    assert html.count("<script") == 3  # the library, then one call per chart
    assert "12,345" in html and "0.1235" in html and "–" in html
    # Nothing is fetched: no src/href attribute pointing anywhere, no stylesheet, no web font
    # (plotly.js itself holds link strings for its mode bar; the browser test checks no request
    # leaves the page).
    library = re.search(r"<script>(.*?)</script>", html, re.S)
    assert library and "plotly.js v" in library.group(1)[:200]
    page = html.replace(library.group(0), "")
    assert not re.search(r"""(src|href)=["']?https?://""", page)
    assert "<link" not in html and "@font-face" not in html and "@import" not in html


def test_a_report_without_charts_carries_no_plotly():
    html = Report(title="t").heading("h").paragraph("p").render()
    assert "<script" not in html and len(html) < 5000


def test_format_value():
    assert format_value(1234567) == "1,234,567"
    assert format_value(3.14159) == "3.1416"
    assert format_value(1e-6) == "1e-06"
    assert format_value(True) == "True"
    assert format_value("x") == "x"


def test_full_report_from_inputs_has_every_section(tmp_path):
    written = write_report(tmp_path / "r.html", report_inputs(), campaign_results())
    assert written.sections == [
        "Campaign spring",
        "At a glance",
        "Segments",
        "Recency, frequency, monetary value",
        "Customer lifetime value",
        "Personas",
        "Where customers live",
    ]
    # funnel, lift, ROI, reallocation + segments, RFM grid, RFM segments, CLV, personas, map
    assert written.charts == 10 and written.campaign == "spring"
    html = Path(written.path).read_text(encoding="utf-8")
    assert html.count(PLOT_DIV) == 10
    assert "Sample ratio mismatch" in html and "lapsed · A (p = 0.0004)" in html
    assert written.size_bytes < 5_500_000  # plotly.js (~4.8 MB) once, the data is small
    # The SRM warning comes before any lift.
    assert html.index("Sample ratio mismatch") < html.index("Lift per segment")


# -- the charts match their data -----------------------------------------------------------------------
def test_lift_chart_draws_the_intervals_it_was_given():
    frame = campaign_results().frame()
    treated = frame[frame["variant"] != "control"]
    fig = charts.lift_intervals(treated)
    raw, shrunk = fig.data
    assert raw.name.startswith("Measured") and shrunk.name.startswith("Shrunk")
    order = treated.iloc[::-1]
    np.testing.assert_allclose(np.asarray(raw.x) - np.asarray(raw.error_x.arrayminus), order["ci_low"])
    np.testing.assert_allclose(np.asarray(raw.x) + np.asarray(raw.error_x.array), order["ci_high"])
    np.testing.assert_allclose(np.asarray(shrunk.x) + np.asarray(shrunk.error_x.array), order["shrunk_high"])
    assert list(raw.y) == [f"{s} · {v}" for s, v in zip(order["segment"], order["variant"], strict=True)]
    # Without shrunk estimates there is one series; a single variant labels rows by segment alone.
    only_a = treated[treated["variant"] == "A"].drop(columns=["lift_shrunk", "shrunk_low", "shrunk_high"])
    fig = charts.lift_intervals(only_a)
    assert len(fig.data) == 1 and list(fig.data[0].y) == ["young", "loyal", "lapsed"]


def test_funnel_roi_and_budget_charts():
    frame = campaign_results().frame()
    treated = frame[frame["variant"] != "control"]
    funnel = treated.groupby("variant", as_index=False)[
        ["assigned", "delivered", "opened", "clicked", "conversions"]
    ].sum()
    fig = charts.campaign_funnel(funnel)
    assert [t.name for t in fig.data] == ["A", "B"]
    assert list(fig.data[0].y) == ["Assigned", "Delivered", "Opened", "Clicked", "Converted"]
    assert list(fig.data[0].x) == [
        int(funnel.iloc[0][c]) for c in ("assigned", "delivered", "opened", "clicked", "conversions")
    ]
    # Stages with no numbers are left out (a campaign counted from the store alone).
    fig = charts.campaign_funnel(funnel[["variant", "assigned", "delivered"]].assign(opened=None))
    assert list(fig.data[0].y) == ["Assigned", "Delivered"]
    roi = charts.roi_by_segment(treated)
    colours = dict(zip(roi.data[0].x, roi.data[0].marker.color, strict=True))
    assert all((c == charts.GREEN) == (v >= 0) for v, c in colours.items())
    budget = charts.budget_reallocation(treated, currency="EUR")
    assert [t.name for t in budget.data] == ["Next round", "This round"]
    assert sum(budget.data[0].x) == pytest.approx(treated["budget_next"].sum())


def test_h3_map_draws_one_hexagon_per_cell_in_classes():
    inputs = report_inputs()
    cells, resolution = charts.coarsen_cells(inputs.cells)
    assert cells["customers"].sum() == inputs.cells["customers"].sum() == 420
    assert cells["revenue"].sum() == pytest.approx(inputs.cells["revenue"].sum())
    assert all(h3.get_resolution(c) == resolution for c in cells["h3_cell"]) and resolution <= 7
    fig = charts.customers_by_cell(cells, inputs.stores, resolution=resolution)
    hexes = [t for t in fig.data if t.fill == "toself"]
    # Every hexagon is drawn exactly once: the polygons are separated by None.
    assert sum(list(t.x).count(None) for t in hexes) == len(cells)
    assert len({t.fillcolor for t in hexes}) == len(hexes)  # one colour per count class
    first = hexes[0]
    ring = list(first.x[: list(first.x).index(None)])
    assert len(ring) == 7 and ring[0] == ring[-1]  # six corners, closed
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio > 1
    stores = [t for t in fig.data if t.name == "Store"][0]
    assert list(stores.text) == ["Châtelet", "Part-Dieu"]


def test_coarsening_and_city_labels():
    inputs = report_inputs()
    # Many cells force a coarser grid; totals are kept.
    few, res = charts.coarsen_cells(inputs.cells, max_cells=5)
    assert len(few) <= 5 and few["customers"].sum() == 420 and res < 7
    labels = charts.city_labels(inputs.cells)
    assert list(labels["city"]) == ["Paris", "Lyon"] and list(labels["customers"]) == [300, 120]
    # A suburb next to its city gets no label of its own.
    suburb = (np.arange(len(inputs.cells)) % 7 == 0) & (inputs.cells["city"] == "Paris")
    near = inputs.cells.assign(city=np.where(suburb, "Suburb", inputs.cells["city"]))
    assert "Suburb" not in set(charts.city_labels(near)["city"])


def test_a_chart_names_missing_columns():
    with pytest.raises(ValueError, match=r"roi_by_segment: missing columns \['roi'\]"):
        charts.roi_by_segment(pd.DataFrame({"segment": ["a"], "variant": ["A"]}))


names = st.lists(
    st.sampled_from(["a", "b", "<", ">", "&", "/", '"', "'", " ", "é", "·", ";", "</script>", "<img src=x>"]),
    min_size=1,
    max_size=8,
).map(lambda parts: "⟦" + "".join(parts) + "⟧")  # brackets found nowhere else in a page


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(names, min_size=1, max_size=4, unique=True),
    lifts=st.lists(st.floats(-1, 3, allow_nan=False), min_size=4, max_size=4),
    counts=st.lists(st.integers(0, 10**6), min_size=4, max_size=4),
)
def test_any_campaign_renders_and_user_text_stays_text(segments, lifts, counts):
    arms = []
    for i, seg in enumerate(segments):
        lift = lifts[i]
        arms.append(ArmResult(segment=seg, variant="control", assigned=counts[i]))
        arms.append(
            ArmResult(
                segment=seg,
                variant="A",
                assigned=counts[i],
                delivered=counts[i] // 2,
                conversions=counts[i] // 9,
                lift=lift,
                ci_low=lift - 0.1,
                ci_high=lift + 0.1,
                roi=lift,
                budget_now=10.0,
                budget_next=5.0 + i,
                reason=f"because {seg}",
            )
        )
    campaign = CampaignResults(campaign=segments[0], arms=arms)
    html = build_report(ReportInputs(workspace="w"), campaign)
    assert html.count(PLOT_DIV) == 4  # funnel, lift, ROI, reallocation
    for seg in segments:
        if any(ch in seg for ch in "<>&\"'"):
            assert seg not in html, "user text reached the page unescaped"


# -- a real workspace --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report_ws(tmp_path_factory):
    """600 generated customers, CLV fitted, profiled; one rule and three discovered segments; a campaign."""
    root = tmp_path_factory.mktemp("report")
    generate(root / "data", customers=600, seed=5, fmt="parquet")
    ws = Workspace.init(root / "ws")
    for kind in ("products", "stores", "customers", "transactions", "events", "consent"):
        ws.ingest(kind, next((root / "data").glob(f"{kind}.*")))
    ws.clv.fit()
    ws.profile()
    ws.segments.create("near_store", "nearest_store_km <= 3", description="close to a store")
    ws.segments.discover(k=3, seed=0)
    members = sorted(ws.segments.member_table("near_store").customer_id.execute())
    with ws.ops.session() as s:
        camp = Campaign(name="spring", status="finished")
        s.add(camp)
        s.flush()
        for i, cid in enumerate(members):
            arm = "control" if i % 10 == 0 else ("A" if i % 2 else "B")
            s.add(Assignment(campaign_id=camp.id, customer_id=cid, segment="near_store", arm=arm))
            if arm != "control":
                state = "failed" if i % 7 == 0 else "sent"
                s.add(
                    OutboxMessage(
                        campaign_id=camp.id,
                        idempotency_key=f"k{i}",
                        message_id=f"m{i}",
                        customer_id=cid,
                        channel="email",
                        variant=arm,
                        state=state,
                    )
                )
        # A test send to a member is not a delivery.
        s.add(
            OutboxMessage(
                campaign_id=camp.id,
                idempotency_key="test",
                message_id="t",
                customer_id=members[1],
                channel="sms",
                variant="A",
                state="sent",
                is_test=True,
            )
        )
    yield ws, members
    ws.close()


def test_gathered_numbers_match_the_warehouse(report_ws):
    ws, members = report_ws
    inputs = gather_inputs(ws.context)
    profiles = ws.table("profiles").execute()
    assert inputs.currency == "EUR" and inputs.as_of == pd.Timestamp(profiles["as_of"].max()).date()
    scored = profiles.dropna(subset=["r_score", "f_score"])
    expected = scored.groupby(["r_score", "f_score"]).size()
    got = inputs.rfm_grid.set_index(["r_score", "f_score"])["customers"]
    pd.testing.assert_series_equal(
        got.sort_index().astype(int), expected.sort_index().astype(int), check_names=False
    )
    tiers = inputs.clv_tiers.set_index("value_tier")
    valued = profiles.dropna(subset=["value_tier", "clv"])
    for tier, group in valued.groupby("value_tier"):
        assert tiers.loc[tier, "customers"] == len(group)
        assert tiers.loc[tier, "median"] == pytest.approx(group["clv"].median())
        assert tiers.loc[tier, "q1"] == pytest.approx(group["clv"].quantile(0.25))
    segs = inputs.segments.set_index("segment")
    assert segs.loc["near_store", "customers"] == len(members) == ws.segments.size("near_store")
    near = profiles[profiles["customer_id"].isin(members)]
    assert segs.loc["near_store", "revenue"] == pytest.approx(near["monetary"].sum())
    assert len(inputs.personas) == 3 and set(inputs.personas["segment"]) == set(segs.index) - {"near_store"}
    assert inputs.cells["customers"].sum() == profiles["h3_cell"].notna().sum()
    assert len(inputs.stores) == len(ws.table("stores").execute())


def test_campaign_counts_from_the_operations_store(report_ws):
    ws, members = report_ws
    results = campaign_from_store(ws.context, "spring")
    counts = {(a.segment, a.variant): (a.assigned, a.delivered) for a in results.arms}
    arms = ["control" if i % 10 == 0 else ("A" if i % 2 else "B") for i in range(len(members))]
    for arm in ("control", "A", "B"):
        assigned = arms.count(arm)
        sent = sum(1 for i, a in enumerate(arms) if a == arm and i % 7 != 0)
        assert counts[("near_store", arm)] == (assigned, None if arm == "control" else sent)


def test_cli_report_writes_the_file_and_json(report_ws, tmp_path):
    ws, _ = report_ws
    ws.close()  # the CLI opens the workspace itself (one DuckDB writer per file)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "spring", "--out", str(out), "-w", str(ws.root), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["campaign"] == "spring" and payload["path"] == str(out)
    assert payload["sections"][0] == "Campaign spring" and "Personas" in payload["sections"]
    # funnel (no lift/ROI/budget without measurement) + segments, RFM ×2, CLV, personas, map
    assert payload["charts"] == 7
    html = out.read_text(encoding="utf-8")
    assert html.count(PLOT_DIV) == 7 and "Delivered" in html
    result = CliRunner().invoke(app, ["report", "sprnig", "--out", str(out), "-w", str(ws.root)])
    assert result.exit_code == 2
    assert "campaign 'sprnig' does not exist (did you mean 'spring'?)" in result.output
    assert "Traceback" not in result.output


def test_an_empty_workspace_still_gets_a_report(workspace, tmp_path):
    written = workspace.reports.write(tmp_path / "empty.html")
    assert written.charts == 0 and written.sections == ["At a glance"]
    assert "<script" not in Path(written.path).read_text(encoding="utf-8")
    # A path that cannot be written is a user error naming the path, not a traceback.
    (tmp_path / "file").write_text("x")
    workspace.close()  # the CLI opens the workspace itself
    result = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "file" / "r.html"), "-w", str(workspace.root)]
    )
    assert (
        result.exit_code == 2
        and "cannot write the report" in result.output
        and "Traceback" not in result.output
    )


@settings(max_examples=30, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-60, 70), st.floats(-179, 179), st.integers(1, 500)), min_size=1, max_size=60
    ),
    max_cells=st.integers(1, 80),
)
def test_any_set_of_cells_is_drawn_once_each_with_totals_kept(points, max_cells):
    frame = (
        pd.DataFrame(
            {
                "h3_cell": [h3.latlng_to_cell(a, o, 7) for a, o, _ in points],
                "customers": [n for *_, n in points],
            }
        )
        .groupby("h3_cell", as_index=False)
        .sum()
    )
    cells, resolution = charts.coarsen_cells(frame, max_cells=max_cells)
    assert cells["customers"].sum() == frame["customers"].sum()
    assert len(cells) <= max(max_cells, len({h3.cell_to_parent(c, 0) for c in frame["h3_cell"]}))
    fig = charts.customers_by_cell(cells, resolution=resolution)
    hexes = [t for t in fig.data if t.fill == "toself"]
    assert sum(list(t.x).count(None) for t in hexes) == len(cells)  # every cell in exactly one class
    assert len(hexes) <= len(charts.HEX_CLASSES)


def test_the_measurements_models_map_onto_the_report_contract():
    """The attributes ``from_measurement`` reads, shaped like the measurement's result models."""
    ns = SimpleNamespace
    interval = ns(low=-0.05, high=0.35)
    kpis = [
        ns(
            segment="lapsed",
            arm="control",
            assigned=100,
            delivered=0,
            opens=0,
            clicks=0,
            conversions=4,
            roi=None,
        ),
        ns(
            segment="lapsed",
            arm="A",
            assigned=900,
            delivered=880,
            opens=400,
            clicks=90,
            conversions=50,
            roi=0.3,
        ),
    ]
    lift = ns(
        relative=0.15,
        relative_interval=interval,
        relative_shrunk=0.1,
        relative_shrunk_interval=ns(low=-0.02, high=0.22),
    )
    comparisons = [
        ns(segment="lapsed", treatment="A", srm=ns(p_value=0.4), conversion=lift),
        ns(segment="all", treatment="A", srm=ns(p_value=0.4), conversion=lift),
    ]
    measurement = ns(campaign="spring", status="finished", currency="EUR", arms=kpis, comparisons=comparisons)
    allocation = ns(
        budget=2000.0,
        arms=[
            ns(
                segment="lapsed",
                variant="A",
                current_share=0.5,
                share=0.75,
                explanation="ROI likely above the others",
            )
        ],
    )
    results = from_measurement(measurement, allocation)
    control, treated = results.arms
    assert control.delivered is None and control.lift is None and control.conversions == 4
    assert (treated.lift, treated.ci_low, treated.ci_high) == (0.15, -0.05, 0.35)
    assert (treated.lift_shrunk, treated.shrunk_low, treated.shrunk_high) == (0.1, -0.02, 0.22)
    assert (treated.budget_now, treated.budget_next, treated.srm_p) == (1000.0, 1500.0, 0.4)
    written = build_report(ReportInputs(workspace="w"), results)
    assert written.count(PLOT_DIV) == 4 and "ROI likely above the others" in written


def test_the_campaign_wide_rows_are_not_counted_twice() -> None:
    """The measurement adds segment "all" rows summing the segments: totals and the funnel leave
    them out, the ROI chart keeps them as the campaign's own line."""
    results = campaign_results(segments=("lapsed", "loyal"))
    by_segment = results.frame()
    whole = [
        ArmResult(segment="all", variant=arm, assigned=int(rows["assigned"].sum()),
                  delivered=None if arm == "control" else int(rows["delivered"].sum()),
                  conversions=int(rows["conversions"].sum()), roi=None if arm == "control" else 0.1)
        for arm, rows in by_segment.groupby("variant")
    ]
    with_whole = results.model_copy(update={"arms": [*results.arms, *whole]})
    assert with_whole.totals() == results.totals() == {
        "assigned": int(by_segment["assigned"].sum()),
        "in control": int(by_segment.loc[by_segment["variant"] == "control", "assigned"].sum()),
        "delivered": int(by_segment["delivered"].sum()),
        "conversions": int(by_segment["conversions"].sum()),
    }
    funnel = charts.campaign_charts(with_whole.frame())["funnel"]
    assigned = {trace.name: trace.x[0] for trace in funnel.data}
    assert assigned == {"A": 900 + 910, "B": 900 + 910}
    roi = charts.campaign_charts(with_whole.frame())["roi"]
    assert "all · A" in roi.data[0].y
