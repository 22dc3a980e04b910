"""The main job: run the whole micromarketing loop that exists so far on generated data.

generate demo data → ingest every file → fit CLV → profile (RFM + CLV) → rule segments and
discovered micro-segments with personas → recommender, offers and next best offer → render the
example template for every member of one segment (nothing is sent).  Each later capability
(campaigns, measurement, …) adds its step here so that ``micromarketing demo`` always exercises
the full loop end to end.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from micromarketing.config import SETTINGS_FILE
from micromarketing.errors import WorkspaceError
from micromarketing.ingest import IngestResult
from micromarketing.personalize import CheckReport
from micromarketing.profiles import ProfileResult
from micromarketing.profiles.clv import ClvFit
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments import Materialisation
from micromarketing.segments.discover import DiscoveryResult
from micromarketing.workspace import Workspace

INGEST_ORDER = ("products", "stores", "customers", "transactions", "events", "consent")

# Rule segments the demo defines: (name, rule, description).
DEMO_SEGMENTS = (
    (
        "lapsed_vip",
        "days_since(last_order_at) > 180 and value_tier in ('top_1', 'top_10')",
        "High-value customers who stopped buying: win them back.",
    ),
    (
        "paris_young_engaged",
        "age between 25 and 34 and within_km(48.8566, 2.3522, 10) "
        "and events(type='email_open', within_days=90) >= 3",
        "Young Parisians who read our e-mails.",
    ),
    (
        "store_neighbours",
        "nearest_store_km <= 3 and frequency >= 5",
        "Regulars living close to a store: local events and click-and-collect.",
    ),
)
# Offers the demo defines: (name, kind, value, cost, eligibility rule, headline).
DEMO_OFFERS = (
    ("welcome_back_15", "discount", 15.0, 1.0, "days_since(last_order_at) > 120", "15% off your next order"),
    ("free_shipping", "free_shipping", 4.9, 4.9, "frequency >= 2", "Free shipping this month"),
    (
        "loyalty_double",
        "loyalty_points",
        2.0,
        0.8,
        "rfm_segment in ('champions', 'loyal')",
        "Double loyalty points",
    ),
)


@dataclass
class DemoReport:
    """What the demo did, with timings per step, for the CLI to print."""

    workspace: Path
    data_dir: Path
    ingested: list[IngestResult] = field(default_factory=list)
    clv: ClvFit | None = None
    profile: ProfileResult | None = None
    rfm: pd.DataFrame | None = None
    value_tiers: pd.DataFrame | None = None
    rule_segments: list[Materialisation] = field(default_factory=list)
    discovery: DiscoveryResult | None = None
    recommendations: pd.DataFrame | None = None
    offers: pd.DataFrame | None = None
    template_check: CheckReport | None = None
    timings: dict[str, float] = field(default_factory=dict)


def run_demo(
    out: Path, customers: int = 20_000, seed: int = 7, progress: ProgressCallback = noop_progress
) -> DemoReport:
    """Generate data into ``out/data``, build a fresh workspace in ``out/workspace``, run the loop."""
    from micromarketing.datasets import generate

    data_dir, ws_dir = out / "data", out / "workspace"
    if ws_dir.exists():
        if not (ws_dir / SETTINGS_FILE).exists():
            raise WorkspaceError(f"{ws_dir} exists and is not a workspace; choose another --out")
        shutil.rmtree(ws_dir)
    report = DemoReport(workspace=ws_dir, data_dir=data_dir)

    with _timed(report, "generate"):
        generate(data_dir, customers=customers, seed=seed, progress=progress)
    with Workspace.init(ws_dir) as ws:
        with _timed(report, "ingest"):
            for kind in INGEST_ORDER:
                for path in sorted(data_dir.glob(f"{kind}.*")):
                    report.ingested.append(ws.ingest(kind, path, progress=progress))
        with _timed(report, "clv"):
            report.clv = ws.clv.fit()
        with _timed(report, "profile"):
            report.profile = ws.profile(progress=progress)
            report.rfm = ws.rfm_summary()
            report.value_tiers = _value_tiers(ws)
        with _timed(report, "segments"):
            segments = ws.segments
            for name, rule, description in DEMO_SEGMENTS:
                report.rule_segments.append(segments.create(name, rule, description=description))
            report.discovery = segments.discover(k="auto", seed=seed, progress=progress)
        with _timed(report, "personalize"):
            ws.recommender.fit(progress=progress)
            for name, kind, value, cost, rule, headline in DEMO_OFFERS:
                ws.offers.add(name, kind=kind, value=value, cost=cost, rule=rule, headline=headline)
            target = _largest(report.rule_segments)
            members = segments.member_table(target.segment).customer_id.execute().tolist()
            sample = sorted(members)[:5]
            report.recommendations = ws.recommender.recommend(sample, k=3)
            report.offers = ws.offers.next_best(sample)
            template = ws.templates.install_examples()
            report.template_check = ws.templates.check(template.name, target.segment)
    return report


def _value_tiers(ws: Workspace) -> pd.DataFrame:
    """Customers, revenue and average 12-month CLV per value tier (the heavy/medium/light users)."""
    p = ws.table("profiles")
    p = p.filter(p.value_tier.notnull())
    frame = (
        p.group_by("value_tier")
        .aggregate(customers=p.count(), revenue=p.monetary.sum(), avg_clv_12m=p.clv_12m.mean())
        .execute()
    )
    frame["share"] = frame["customers"] / frame["customers"].sum()
    order = {tier: i for i, tier in enumerate(("top_1", "top_10", "top_50", "rest"))}
    return frame.sort_values("value_tier", key=lambda s: s.map(order)).reset_index(drop=True)


def _largest(materialised: list[Materialisation]) -> Materialisation:
    return max(materialised, key=lambda m: m.size)


class _timed:
    def __init__(self, report: DemoReport, step: str) -> None:
        self.report, self.step = report, step

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.timings[self.step] = time.perf_counter() - self.start
