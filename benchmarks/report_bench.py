"""Report benchmark: the workspace HTML report against one self-contained Plotly file per chart.

Builds the same ten charts (the analytics sections plus a campaign of ``--segments`` segments ×
two variants, customers spread over ``--customers`` random French locations) two ways and prints
size and time of each:

* ours: :func:`micromarketing.measure.report.build_report`, plotly.js inlined once per file;
* baseline: what ``fig.write_html()`` gives by default — every chart its own self-contained
  HTML with plotly.js inlined (the naive way to get "works offline").

With ``--workspace DIR`` it also times gathering the numbers from a real workspace.

    .venv/bin/python benchmarks/report_bench.py [--customers 20000] [--segments 12] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import time

import h3
import numpy as np
import pandas as pd

from micromarketing.measure.report import (
    ArmResult,
    CampaignResults,
    ReportInputs,
    analytics_report,
    build_report,
)

CITIES = ((48.857, 2.352), (45.764, 4.836), (43.296, 5.370), (44.838, -0.579), (50.629, 3.057))


def synthetic_inputs(customers: int, seed: int = 0) -> ReportInputs:
    rng = np.random.default_rng(seed)
    city = rng.integers(0, len(CITIES), customers)
    lat = np.array([CITIES[c][0] for c in city]) + rng.normal(0, 0.08, customers)
    lon = np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.12, customers)
    cells = (
        pd.DataFrame(
            {
                "h3_cell": [h3.latlng_to_cell(a, o, 7) for a, o in zip(lat, lon, strict=True)],
                "city": [f"city{c}" for c in city],
                "customers": 1,
                "revenue": rng.gamma(2.0, 60.0, customers),
            }
        )
        .groupby(["h3_cell", "city"], as_index=False)
        .sum()
    )
    grid = pd.DataFrame(
        [
            {
                "r_score": r,
                "f_score": f,
                "customers": int(rng.integers(50, 500)),
                "revenue": float(rng.gamma(2, 9e3)),
            }
            for r in range(1, 6)
            for f in range(1, 6)
        ]
    )
    segs = pd.DataFrame(
        {
            "segment": [f"segment_{i:02d}" for i in range(12)],
            "kind": "rule",
            "customers": rng.integers(100, 3000, 12),
            "revenue": rng.gamma(2, 5e4, 12),
            "avg_clv": rng.gamma(2, 40, 12),
        }
    )
    tiers = pd.DataFrame(
        {
            "value_tier": ["top_1", "top_10", "top_50", "rest"],
            "customers": [customers // 100, customers // 11, customers * 4 // 10, customers // 2],
            "p05": [700, 250, 50, 1.0],
            "q1": [850, 300, 65, 5.0],
            "median": [1000, 350, 80, 12.0],
            "q3": [1300, 420, 100, 22.0],
            "p95": [2000, 520, 140, 45.0],
            "mean": [1100, 360, 85, 15.0],
        }
    )
    personas = pd.DataFrame(
        {
            "segment": [f"discovered_{i:02d}" for i in range(1, 7)],
            "name": [f"Persona {i}" for i in range(1, 7)],
            "tagline": ["35–44, buy monthly"] * 6,
            "customers": [customers // 6] * 6,
            "share": [1 / 6] * 6,
            "avg_clv": [50.0] * 6,
            "traits": ["interest deals: 51% vs 7% overall; age band 35–44: 40% vs 18% overall"] * 6,
        }
    )
    stores = pd.DataFrame(
        {
            "store_id": [f"S{i}" for i in range(len(CITIES))],
            "name": [f"Store {i}" for i in range(len(CITIES))],
            "lat": [c[0] for c in CITIES],
            "lon": [c[1] for c in CITIES],
        }
    )
    return ReportInputs(
        workspace="bench",
        currency="EUR",
        headline={"customers": customers},
        segments=segs,
        rfm_segments=segs.head(10),
        rfm_grid=grid,
        clv_tiers=tiers,
        personas=personas,
        cells=cells,
        stores=stores,
    )


def synthetic_campaign(segments: int, seed: int = 0) -> CampaignResults:
    rng = np.random.default_rng(seed)
    arms = []
    for i in range(segments):
        seg = f"segment_{i:02d}"
        arms.append(ArmResult(segment=seg, variant="control", assigned=200, conversions=10))
        for variant in ("A", "B"):
            lift = float(rng.normal(0.1, 0.1))
            arms.append(
                ArmResult(
                    segment=seg,
                    variant=variant,
                    assigned=1800,
                    delivered=1750,
                    opened=800,
                    clicked=200,
                    conversions=100,
                    lift=lift,
                    ci_low=lift - 0.12,
                    ci_high=lift + 0.12,
                    lift_shrunk=lift * 0.7,
                    shrunk_low=lift * 0.7 - 0.08,
                    shrunk_high=lift * 0.7 + 0.08,
                    roi=float(rng.normal(0.2, 0.4)),
                    budget_now=1000.0,
                    budget_next=float(rng.gamma(10, 100)),
                    srm_p=float(rng.uniform(0.01, 1)),
                )
            )
    return CampaignResults(campaign="bench", currency="EUR", arms=arms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--workspace", default=None, help="also time gathering from this workspace")
    args = parser.parse_args()

    inputs, campaign = synthetic_inputs(args.customers), synthetic_campaign(args.segments)
    build_report(inputs, campaign)  # warm: plotly's validators load on first use

    t = time.perf_counter()
    ours = build_report(inputs, campaign)
    ours_s = time.perf_counter() - t

    t = time.perf_counter()
    figures = [b["figure"] for b in analytics_report(inputs, campaign).blocks if b["kind"] == "figure"]
    baseline = [fig.to_html(include_plotlyjs=True, full_html=True) for fig in figures]
    base_s = time.perf_counter() - t
    base_bytes = sum(len(h.encode()) for h in baseline)
    ours_bytes = len(ours.encode())

    print(f"{len(figures)} charts, {args.customers:,} customers, {args.segments} campaign segments")
    print(f"  ours: one file, plotly.js once      {ours_bytes / 1e6:7.2f} MB  {ours_s:6.2f} s")
    print(f"  baseline: one file per chart        {base_bytes / 1e6:7.2f} MB  {base_s:6.2f} s")
    print(
        f"  ratio (baseline / ours)             {base_bytes / ours_bytes:7.1f} x   {base_s / ours_s:6.1f} x"
    )

    if args.workspace:
        from micromarketing import Workspace

        with Workspace.open(args.workspace) as ws:
            t = time.perf_counter()
            gathered = ws.reports.inputs()
            gather_s = time.perf_counter() - t
            t = time.perf_counter()
            html = build_report(gathered)
            render_s = time.perf_counter() - t
        print(
            f"  workspace {args.workspace}: gather {gather_s:.2f} s, render {render_s:.2f} s, "
            f"{len(html.encode()) / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
