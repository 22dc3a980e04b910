"""The main job: run the whole micromarketing loop that exists so far on generated data.

generate demo data → ingest every file → fit CLV → profile → discover micro-segments → fit CLV
again, one model per discovered segment, and profile with it (RFM + CLV) → rule segments and the
discovered segments' personas → recommender, offers and next best offer → check the
example template for every member of one segment → a campaign on the discovered segments with a
control group and two variants (with and without an offer), delivered over SMTP to a server on
127.0.0.1 started for the demo → responses simulated from a known true uplift per segment and
variant, ingested as transactions → measurement (lift with intervals, SRM, ROI) → the budget
reallocated for the next round → ``report.html`` beside the workspace.  Each capability adds its
step here so that ``micromarketing demo`` always exercises the full loop end to end.

The campaign runs on the day after the generated data ends (:data:`CAMPAIGN_AT`, 10:00 in Paris),
with the delivery worker on the same simulated clock, so the contact policy (quiet hours in each
recipient's time zone) and the attribution windows see the same day whenever the demo runs, and
the simulated orders are in the past (ingest refuses orders from the future).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from multiprocessing.connection import Connection
from pathlib import Path

import pandas as pd
from aiosmtpd.controller import Controller

from micromarketing.campaigns.deliver import DeliveryReport
from micromarketing.campaigns.results import RunResult
from micromarketing.campaigns.spec import CampaignSpec
from micromarketing.config import SETTINGS_FILE
from micromarketing.datasets import REFERENCE_DATE
from micromarketing.datasets.responses import TrueResponse, simulate_responses
from micromarketing.errors import WorkspaceError
from micromarketing.ingest import IngestResult
from micromarketing.measure.report import ReportFile
from micromarketing.measure.results import Allocation, CampaignMeasurement
from micromarketing.personalize import CheckReport
from micromarketing.profiles import ProfileResult
from micromarketing.profiles.clv import BY_SEGMENTS, ClvFit
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.segments import Materialisation
from micromarketing.segments.discover import DiscoveryResult
from micromarketing.workspace import Workspace

INGEST_ORDER = ("products", "stores", "customers", "transactions", "events", "consent")

# Rule segments the demo defines: (name, rule, description).
DEMO_SEGMENTS = (
    (
        "lapsed_vip",
        # Past spend, not CLV: the per-segment models rightly give lapsed customers a low CLV.
        "days_since(last_order_at) > 180 and monetary >= 1000",
        "Big spenders (1,000 or more) who stopped buying: win them back.",
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


CAMPAIGN = "demo_spring"
CAMPAIGN_AT = datetime.combine(REFERENCE_DATE + timedelta(days=1), clock_time(8, 0), tzinfo=UTC)
ATTRIBUTION_DAYS = 7
CAMPAIGN_BUDGET = 2_000.0
CAMPAIGN_OFFER = "free_shipping"
# The truth the responses are simulated from: per discovered segment (by its rank in the
# discovery) a baseline conversion rate within the attribution window, and each variant's
# absolute uplift for the members the message reached (variant "a" carries the offer).
BASELINES = (0.04, 0.06, 0.03, 0.08, 0.05, 0.02, 0.07, 0.045, 0.035, 0.055, 0.065, 0.025)
UPLIFT_A = (0.04, 0.02, 0.05, 0.01, 0.03, 0.06, 0.0, 0.035, 0.045, 0.015, 0.025, 0.05)
UPLIFT_B = (0.02, 0.01, 0.0, 0.03, 0.015, 0.02, 0.01, 0.0, 0.02, 0.01, 0.015, 0.03)


@dataclass
class DemoReport:
    """What the demo did, with timings per step, for the CLI to print."""

    workspace: Path
    data_dir: Path
    ingested: list[IngestResult] = field(default_factory=list)
    clv: ClvFit | None = None  # per discovered segment (small segments: pooled) when there are any
    pooled_clv: ClvFit | None = None  # the first, pooled fit that discovery started from
    profile: ProfileResult | None = None
    rfm: pd.DataFrame | None = None
    value_tiers: pd.DataFrame | None = None
    rule_segments: list[Materialisation] = field(default_factory=list)
    discovery: DiscoveryResult | None = None
    recommendations: pd.DataFrame | None = None
    offers: pd.DataFrame | None = None
    template_check: CheckReport | None = None
    campaign: RunResult | None = None
    delivery: DeliveryReport | None = None
    smtp_received: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    truth: dict[tuple[str, str], float] = field(default_factory=dict)  # true lift (ITT) per arm
    measurement: CampaignMeasurement | None = None
    allocation: Allocation | None = None
    report_file: ReportFile | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def lift_coverage(self) -> tuple[int, int]:
        """How many of the measured 95% intervals of the absolute conversion lift cover the true
        lift (covered, compared)."""
        covered = compared = 0
        for comparison in self.measurement.comparisons if self.measurement else []:
            true = self.truth.get((comparison.segment, comparison.treatment))
            interval = comparison.conversion.absolute_interval
            if true is None or interval.low is None or interval.high is None:
                continue
            compared += 1
            covered += int(interval.low <= true <= interval.high)
        return covered, compared


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
        with _timed(report, "segments"):
            segments = ws.segments
            report.discovery = segments.discover(k="auto", seed=seed, progress=progress)
        if report.discovery.segments:
            with _timed(report, "clv by segment"):
                # One model per discovered segment: a pooled fit misjudges the segments' value.
                report.pooled_clv, report.clv = report.clv, ws.clv.fit(by=BY_SEGMENTS)
                report.profile = ws.profile(progress=progress)
                # Same features, k and seed: the same segments, whose personas quote their own CLV.
                report.discovery = segments.discover(k=report.discovery.k, seed=seed, progress=progress)
        with _timed(report, "profile"):
            report.rfm = ws.rfm_summary()
            report.value_tiers = _value_tiers(ws)
        with _timed(report, "segments"):
            for name, rule, description in DEMO_SEGMENTS:
                report.rule_segments.append(segments.create(name, rule, description=description))
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
        discovered = [d.name for d in report.discovery.segments] if report.discovery else []
        targets = discovered or [m.segment for m in report.rule_segments]
        with _timed(report, "campaign"), _SmtpSink() as sink:
            ws.settings.channels.email.port = sink.port
            spec = demo_campaign(targets, template.name)
            report.campaign = ws.campaigns.run(spec, now=CAMPAIGN_AT, progress=progress)
            started = time.monotonic()
            report.delivery = ws.delivery.deliver(
                campaign=CAMPAIGN,
                clock=lambda: CAMPAIGN_AT + timedelta(seconds=time.monotonic() - started),
                progress=progress,
            )
            report.smtp_received = sink.received
            report.skipped_reasons = ws.campaigns.status(CAMPAIGN).skipped_reasons
        with _timed(report, "responses"):
            members = ws.campaigns.assignments(CAMPAIGN)
            truth = demo_truth(targets)
            orders = simulate_responses(
                members, truth, window_days=ATTRIBUTION_DAYS, currency=report.profile.currency, seed=seed
            )
            path = data_dir / "campaign_responses.csv"
            orders.to_csv(path, index=False)
            report.ingested.append(ws.ingest("transactions", path, progress=progress))
            report.responses = len(orders)
            report.truth = true_lifts(members, truth)
        with _timed(report, "measure"):
            measured_at = CAMPAIGN_AT + timedelta(days=ATTRIBUTION_DAYS + 1)
            report.measurement = ws.measure.campaign(CAMPAIGN, as_of=measured_at)
            report.allocation = ws.measure.allocate(CAMPAIGN, CAMPAIGN_BUDGET, seed=seed, as_of=measured_at)
        with _timed(report, "report"):
            report.report_file = ws.reports.write(out / "report.html", campaign=CAMPAIGN)
    return report


def demo_campaign(segments: list[str], template: str) -> CampaignSpec:
    """The demo's campaign: every target segment, 20% control, variant a with the demo offer and
    variant b without, both by email."""
    return CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "description": "Spring picks for every discovered micro-segment, with and without an offer.",
            "objective": "conversion",
            "attribution_days": ATTRIBUTION_DAYS,
            "control_share": 0.2,
            "budget": CAMPAIGN_BUDGET,
            "segments": [
                {
                    "segment": name,
                    "variants": [
                        {"name": "a", "template": template, "offer": CAMPAIGN_OFFER, "channel": "email",
                         "share": 0.5},
                        {"name": "b", "template": template, "channel": "email", "share": 0.5},
                    ],
                }
                for name in segments
            ],
        }
    )


def demo_truth(segments: list[str]) -> dict[str, TrueResponse]:
    """The known truth the demo's responses are simulated from (see :data:`BASELINES`)."""
    return {
        name: TrueResponse(
            BASELINES[i % len(BASELINES)],
            {"a": UPLIFT_A[i % len(UPLIFT_A)], "b": UPLIFT_B[i % len(UPLIFT_B)]},
            order_value=45.0 + 10.0 * (i % 5),
        )
        for i, name in enumerate(segments)
    }


def true_lifts(members: pd.DataFrame, truth: dict[str, TrueResponse]) -> dict[tuple[str, str], float]:
    """The true absolute lift in conversion rate of each (segment, variant) over its control, as
    the measurement estimates it (intention to treat: the uplift times the share reached)."""
    out = {}
    for (segment, arm), group in members.groupby(["segment", "arm"]):
        if segment in truth and arm in truth[segment].uplift:
            out[(segment, arm)] = truth[segment].uplift[arm] * float(group["delivered"].mean())
    return out


class _SmtpSink:
    """An SMTP server on 127.0.0.1 for the demo's delivery (aiosmtpd), counting what it receives.

    It runs in a child process: in this one, receiving competed with sending for the GIL (the
    server took 24 of the 37 s that delivering 11,983 messages took).
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        spawn = multiprocessing.get_context("spawn")  # not fork: this process runs DuckDB's threads
        self._pipe, self._child_end = spawn.Pipe()
        self._process = spawn.Process(target=_serve_smtp, args=(self.port, self._child_end), daemon=True)

    @property
    def received(self) -> int:
        self._pipe.send("count")
        return int(self._pipe.recv())

    def __enter__(self) -> _SmtpSink:
        self._process.start()
        self._child_end.close()  # the child holds it now: if the child dies, our end reads EOF
        try:
            if not self._pipe.poll(60):
                raise WorkspaceError("the demo's SMTP server did not start within 60 s")
            self._pipe.recv()  # listening
        except (EOFError, WorkspaceError):
            self._process.kill()
            self._process.join(timeout=10)
            raise WorkspaceError(
                f"the demo's SMTP server on 127.0.0.1:{self.port} did not start "
                f"(exit code {self._process.exitcode})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # a child that died already has nothing to stop
            self._pipe.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


def _serve_smtp(port: int, pipe: Connection) -> None:
    """The child process of :class:`_SmtpSink`: serve until told to stop, answering counts."""
    counter = _CountingHandler()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    pipe.send("ready")
    while (request := pipe.recv()) != "stop":
        assert request == "count"
        pipe.send(counter.received)
    controller.stop()


class _CountingHandler:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        self.received += 1
        return "250 OK"


def _value_tiers(ws: Workspace) -> pd.DataFrame:
    """Customers, revenue and average CLV per value tier (the heavy/medium/light users)."""
    p = ws.table("profiles")
    p = p.filter(p.value_tier.notnull())
    frame = (
        p.group_by("value_tier")
        .aggregate(customers=p.count(), revenue=p.monetary.sum(), avg_clv=p.clv.mean())
        .execute()
    )
    frame["share"] = frame["customers"] / frame["customers"].sum()
    order = {tier: i for i, tier in enumerate(("top_1", "top_10", "top_50", "rest"))}
    return frame.sort_values("value_tier", key=lambda s: s.map(order)).reset_index(drop=True)


def _largest(materialised: list[Materialisation]) -> Materialisation:
    return max(materialised, key=lambda m: m.size)


class _timed:
    """Adds the time spent in the block to the report's figure for ``step``."""

    def __init__(self, report: DemoReport, step: str) -> None:
        self.report, self.step = report, step

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.report.timings[self.step] = self.report.timings.get(self.step, 0.0) + elapsed
