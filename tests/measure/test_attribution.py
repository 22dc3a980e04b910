"""Attribution and KPIs over a small workspace with known answers.

The campaign runner is not merged yet, so the tests write Campaign / Assignment / OutboxMessage
rows directly through SQLAlchemy, and transactions and events through ingest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.errors import NotFoundError
from micromarketing.measure import stats
from micromarketing.measure.results import CampaignMeasurement
from micromarketing.store.models import Assignment, Campaign, Offer, OutboxMessage
from micromarketing.workspace import Workspace

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # assignment time
SENT = T0 + timedelta(hours=1)
AS_OF = datetime(2026, 9, 30, tzinfo=UTC)


def _csv(path: Path, header: str, rows: Iterable[Iterable[Any]]) -> Path:
    path.write_text(
        header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _ingest(
    ws: Workspace, tmp: Path, customers: list[str], orders: list[tuple], events: list[tuple] = ()
) -> None:
    ws.ingest("customers", _csv(tmp / "c.csv", "customer_id", [[c] for c in customers]))
    if orders:
        rows = [(f"O{i}", cid, at.isoformat(), amount, "USD") for i, (cid, at, amount) in enumerate(orders)]
        ws.ingest(
            "transactions", _csv(tmp / "t.csv", "order_id,customer_id,ordered_at,amount,currency", rows)
        )
    if events:
        rows = [
            (f"E{i}", cid, kind, at.isoformat(), campaign)
            for i, (cid, kind, at, campaign) in enumerate(events)
        ]
        ws.ingest(
            "events", _csv(tmp / "e.csv", "event_id,customer_id,event_type,occurred_at,campaign_id", rows)
        )


def add_campaign(
    ws: Workspace,
    name: str,
    members: list[tuple[str, str, str, str | None]],  # customer, segment, arm, outbox state (None: no row)
    *,
    spec: dict[str, Any] | None = None,
    control_share: float = 0.5,
    sent_at: datetime = SENT,
    offer_code: str | None = None,
) -> int:
    """Insert a campaign, its assignments and its outbox rows as the campaign runner would."""
    with ws.ops.session() as session:
        campaign = Campaign(
            name=name,
            status="finished",
            attribution_days=7,
            control_share=control_share,
            spec=spec or {},
            budget=1000.0,
        )
        session.add(campaign)
        session.flush()
        for customer, segment, arm, state in members:
            treated = arm not in ("control", "holdout")
            session.add(
                Assignment(
                    campaign_id=campaign.id,
                    customer_id=customer,
                    segment=segment,
                    arm=arm,
                    channel="email" if treated else None,
                    offer_code=offer_code if treated else None,
                    assigned_at=T0,
                )
            )
            if state is not None:
                session.add(
                    OutboxMessage(
                        campaign_id=campaign.id,
                        idempotency_key=f"{name}:{customer}:email",
                        message_id=f"<{name}.{customer}@test>",
                        customer_id=customer,
                        channel="email",
                        variant=arm,
                        state=state,
                        sent_at=sent_at if state == "sent" else None,
                    )
                )
        return campaign.id


@pytest.fixture
def spring(workspace: Workspace, tmp_path: Path) -> Workspace:
    """Four treated and four control members of one segment, with hand-placed orders."""
    day = timedelta(days=1)
    _ingest(
        workspace,
        tmp_path,
        ["T1", "T2", "T3", "T4", "C1", "C2", "C3", "C4"],
        orders=[
            ("T1", SENT + 2 * day, 50.0),  # in the window
            ("T1", T0 - 17 * day, 10.0),  # pre-period spend
            ("T2", SENT + 9 * day, 30.0),  # after the 7-day window: retained, not converted
            ("T3", SENT + 1 * day, 25.0),  # after another campaign's message: its credit (last touch)
            ("T4", T0 + 4 * day, 20.0),  # message skipped: intention to treat, window from assignment
            ("C1", T0 + 3 * day, 40.0),
            ("C2", T0 - 12 * day, 100.0),  # before: pre-period only
        ],
        events=[
            ("T1", "email_open", SENT + timedelta(minutes=5), "spring"),
            ("T1", "email_click", SENT + timedelta(minutes=6), "spring"),
            ("T2", "email_open", SENT + timedelta(minutes=5), "other"),  # another campaign's message
        ],
    )
    with workspace.ops.session() as session:
        session.add(Offer(name="spring10", kind="discount", value=10, cost=5.0))
    spec = {
        "segments": [{"segment": "vip", "variants": [{"name": "a", "share": 1.0}]}],
        "cost_per_message": 0.5,
    }
    add_campaign(
        workspace,
        "spring",
        [
            ("T1", "vip", "a", "sent"),
            ("T2", "vip", "a", "sent"),
            ("T3", "vip", "a", "sent"),
            ("T4", "vip", "a", "skipped"),
            ("C1", "vip", "control", None),
            ("C2", "vip", "control", None),
            ("C3", "vip", "control", None),
            ("C4", "vip", "control", None),
        ],
        spec=spec,
        offer_code="spring10",
    )
    add_campaign(workspace, "other", [("T3", "vip", "x", "sent")], sent_at=SENT + timedelta(hours=10))
    return workspace


def _arm(result: CampaignMeasurement, segment: str, arm: str):
    return next(a for a in result.arms if a.segment == segment and a.arm == arm)


def test_hand_checked_campaign(spring: Workspace) -> None:
    result = spring.measure.campaign("spring", as_of=AS_OF)
    treated, control = _arm(result, "vip", "a"), _arm(result, "vip", "control")
    assert (treated.assigned, treated.delivered, treated.opens, treated.clicks, treated.engaged) == (
        4,
        3,
        1,
        1,
        1,
    )
    assert (treated.conversions, treated.revenue, treated.revenue_per_recipient) == (2, 70.0, 17.5)
    assert treated.cost == pytest.approx(3 * 0.5 + 2 * 5.0)  # 3 delivered messages, 2 redeemed offers
    assert (treated.retained, treated.retention) == (4, 1.0)
    assert (control.assigned, control.conversions, control.revenue, control.retained) == (4, 1, 40.0, 1)
    assert control.opens == 0 and control.cost == 0.0 and control.roi is None
    assert treated.incremental_conversions == pytest.approx(2 - 4 * 0.25)
    assert treated.incremental_revenue == pytest.approx(4 * (17.5 - 10.0))
    assert treated.roi == pytest.approx((30.0 * 0.3 - 11.5) / 11.5)

    (segment_level, overall) = result.comparisons
    assert segment_level.segment == "vip" and overall.segment == "all"
    assert segment_level.srm.observed == {"control": 4, "a": 4} and not segment_level.srm.flagged
    expected = stats.two_proportion_test(2, 4, 1, 4)
    assert segment_level.conversion.absolute == pytest.approx(0.25)
    assert segment_level.conversion.p_value == pytest.approx(expected.absolute.p_value)
    assert segment_level.conversion.absolute_interval.low == pytest.approx(expected.absolute.interval.low)
    # one family member: adjusted equals raw
    assert segment_level.conversion.p_value_adjusted == pytest.approx(segment_level.conversion.p_value)
    # revenue per recipient: CUPED on the pre-period spend (T1 10, C2 100)
    t = stats.CovariateMoments.of([50, 0, 0, 20], [10, 0, 0, 0])
    c = stats.CovariateMoments.of([40, 0, 0, 0], [0, 100, 0, 0])
    cuped = stats.cuped_test(t, c)
    assert segment_level.revenue.method.endswith("CUPED on pre-period spend")
    assert segment_level.revenue.absolute == pytest.approx(cuped.absolute.estimate)
    assert segment_level.revenue.p_value == pytest.approx(cuped.absolute.p_value)
    assert segment_level.revenue.cuped_variance_reduction == pytest.approx(cuped.variance_reduction)
    assert result.attribution == "last_touch" and result.currency == "USD"


def test_any_touch_credits_every_campaign_in_the_window(spring: Workspace) -> None:
    spring.settings.measure.attribution = "any_touch"
    result = spring.measure.campaign("spring", as_of=AS_OF)
    treated = _arm(result, "vip", "a")
    assert (treated.conversions, treated.revenue) == (3, 95.0)


def test_outcomes_after_as_of_are_not_seen(spring: Workspace) -> None:
    early = spring.measure.campaign("spring", as_of=SENT + timedelta(days=2, hours=1))
    treated = _arm(early, "vip", "a")
    assert (treated.conversions, treated.revenue) == (1, 50.0)  # T4's order comes later
    assert any("still open" in w for w in early.warnings)
    # while windows are open, the lifts carry always-valid intervals, wider than the fixed ones
    lift = early.comparisons[0].conversion
    assert lift.absolute_interval_always_valid is not None and lift.p_value_always_valid is not None
    assert lift.absolute_interval_always_valid.low < lift.absolute_interval.low
    done = spring.measure.campaign("spring", as_of=AS_OF.replace(tzinfo=None))  # naive means UTC
    assert done.comparisons[0].conversion.absolute_interval_always_valid is None


def test_unknown_campaign_names_the_known_ones(spring: Workspace) -> None:
    expected = r"'sprin' does not exist \(did you mean 'spring'\?\); campaigns: other, spring"
    with pytest.raises(NotFoundError, match=expected):
        spring.measure.campaign("sprin")


def test_global_holdout_against_everyone_contacted(workspace: Workspace, tmp_path: Path) -> None:
    members = [f"M{i}" for i in range(12)]
    _ingest(
        workspace,
        tmp_path,
        members,
        orders=[("M0", SENT + timedelta(days=1), 10.0), ("M10", SENT + timedelta(days=1), 5.0)],
    )
    add_campaign(
        workspace,
        "h",
        [
            (m, "s", "a" if i < 8 else ("control" if i < 10 else "holdout"), "sent" if i < 8 else None)
            for i, m in enumerate(members)
        ],
    )
    result = workspace.measure.campaign("h", as_of=AS_OF)
    assert result.holdout is not None
    assert (result.holdout.treatment, result.holdout.control) == ("contacted", "holdout")
    assert result.holdout.conversion.treatment == pytest.approx(1 / 8)
    assert result.holdout.conversion.control == pytest.approx(1 / 2)
    assert not any(c.treatment == "holdout" or c.control == "holdout" for c in result.comparisons)
    assert result.holdout.srm.note.startswith("not tested")  # no [campaigns] global_holdout_share here


def test_random_campaign_matches_a_direct_pandas_computation(workspace: Workspace, tmp_path: Path) -> None:
    """Three segments × two variants, random orders: the SQL sums equal a per-member pandas count,
    BH is applied across the six segment comparisons, SRM is flagged only where the split is off."""
    rng = np.random.default_rng(42)
    rows, orders = [], []
    for i in range(900):
        segment = ["s1", "s2", "s3"][i % 3]
        arm = rng.choice(["control", "a", "b"], p=[0.2, 0.4, 0.4] if segment != "s3" else [0.5, 0.25, 0.25])
        rows.append((f"C{i}", segment, str(arm), "sent" if arm != "control" else None))
        rate = {"control": 0.1, "a": 0.2, "b": 0.12}[str(arm)]
        touch = SENT if arm != "control" else T0
        for _ in range(rng.poisson(1.0)):  # pre-period spend
            orders.append(
                (f"C{i}", touch - timedelta(days=float(rng.uniform(1, 80))), round(rng.gamma(2, 10), 2))
            )
        if rng.random() < rate:
            orders.append(
                (f"C{i}", touch + timedelta(days=float(rng.uniform(0.01, 6.9))), round(rng.gamma(2, 20), 2))
            )
        if rng.random() < 0.1:  # outside the window
            orders.append((f"C{i}", touch + timedelta(days=float(rng.uniform(7.1, 60))), 7.0))
    _ingest(workspace, tmp_path, [r[0] for r in rows], orders)
    spec = {
        "segments": [
            {"segment": s, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}
            for s in ("s1", "s2", "s3")
        ]
    }
    add_campaign(workspace, "rnd", rows, spec=spec, control_share=0.2)
    result = workspace.measure.campaign("rnd", as_of=AS_OF)

    members = pd.DataFrame(rows, columns=["customer_id", "segment", "arm", "state"])
    tx = pd.DataFrame(orders, columns=["customer_id", "at", "amount"]).merge(members, on="customer_id")
    tx["touch"] = np.where(tx["arm"] == "control", T0, SENT)
    tx["touch"] = pd.to_datetime(tx["touch"], utc=True)
    inside = tx[(tx["at"] > tx["touch"]) & (tx["at"] <= tx["touch"] + timedelta(days=7))]
    revenue = inside.groupby("customer_id")["amount"].sum()
    members["revenue"] = members["customer_id"].map(revenue).fillna(0.0)
    for (segment, arm), group in members.groupby(["segment", "arm"]):
        got = _arm(result, segment, arm)
        assert got.assigned == len(group)
        assert got.conversions == int((group["revenue"] > 0).sum())
        assert got.revenue == pytest.approx(group["revenue"].sum())

    segment_level = [c for c in result.comparisons if c.segment != "all"]
    assert len(segment_level) == 6
    adjusted = stats.adjust_p_values([c.conversion.p_value for c in segment_level], "bh")
    assert [c.conversion.p_value_adjusted for c in segment_level] == pytest.approx(list(adjusted))
    # Holm instead: adjusted p-values as Holm's, intervals at Bonferroni's level (wider than BH's)
    workspace.settings.measure.adjustment = "holm"
    holm = [c for c in workspace.measure.campaign("rnd", as_of=AS_OF).comparisons if c.segment != "all"]
    expected_holm = stats.adjust_p_values([c.conversion.p_value for c in holm], "holm")
    assert [c.conversion.p_value_adjusted for c in holm] == pytest.approx(list(expected_holm))
    for h, b in zip(holm, segment_level, strict=True):
        width = h.revenue.absolute_interval_adjusted.high - h.revenue.absolute_interval_adjusted.low
        assert width >= b.revenue.absolute_interval_adjusted.high - b.revenue.absolute_interval_adjusted.low
    flagged = {c.segment for c in segment_level if c.srm.flagged}
    assert flagged == {"s3"}  # planned 20/40/40, drawn 50/25/25
    assert result.warnings[0].startswith("sample-ratio mismatch in segment 's3'")  # shown first
    assert result.srm_flagged
    for c in segment_level:  # shrinkage: between the raw lift and the campaign's
        target = next(o for o in result.comparisons if o.segment == "all" and o.treatment == c.treatment)
        low, high = sorted([c.conversion.relative, target.conversion.relative])
        assert low - 1e-12 <= c.conversion.relative_shrunk <= high + 1e-12


def test_cli_measure_json(spring: Workspace) -> None:
    root = spring.root
    spring.close()
    out = CliRunner().invoke(app, ["measure", "spring", "--json", "-w", str(root)])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    first = payload["comparisons"][0]
    assert list(first)[:4] == ["segment", "treatment", "control", "srm"]  # the SRM comes before any lift
    assert set(first["srm"]) >= {"observed", "expected", "p_value", "flagged"}
    text = CliRunner().invoke(app, ["measure", "spring", "-w", str(root)])
    assert text.exit_code == 0, text.output
    assert text.stdout.index("Sample ratio") < text.stdout.index("Lift")
    missing = CliRunner().invoke(app, ["measure", "nope", "-w", str(root)])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_cli_allocate(spring: Workspace) -> None:
    root = spring.root
    spring.close()
    out = CliRunner().invoke(app, ["allocate", "spring", "--budget", "100", "--json", "-w", str(root)])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["budget"] == 100 and [a["variant"] for a in payload["arms"]] == ["a"]
    assert payload["arms"][0]["share"] == pytest.approx(1.0)  # one arm gets everything
    text = CliRunner().invoke(app, ["allocate", "spring", "--budget", "100", "-w", str(root)])
    assert text.exit_code == 0 and "vip/a:" in text.stdout
    bad = CliRunner().invoke(app, ["allocate", "spring", "--budget", "-5", "-w", str(root)])
    assert bad.exit_code == 2 and "--budget must be positive" in bad.output


def test_nobody_converted_gives_nulls_not_nan(workspace: Workspace, tmp_path: Path) -> None:
    members = [f"Z{i}" for i in range(10)]
    _ingest(workspace, tmp_path, members, orders=[])
    add_campaign(
        workspace,
        "quiet",
        [(m, "s", "a" if i % 2 else "control", "sent" if i % 2 else None) for i, m in enumerate(members)],
    )
    result = workspace.measure.campaign("quiet", as_of=AS_OF)
    lift = result.comparisons[0].conversion
    assert (lift.absolute, lift.p_value, lift.relative) == (0.0, 1.0, None)
    assert result.comparisons[0].revenue.relative is None
    json.loads(result.model_dump_json())  # strict JSON: no NaN anywhere
    assert "NaN" not in result.model_dump_json()
