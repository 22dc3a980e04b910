"""The plan: per segment and variant the members, control, what each policy rule removes, reach,
cost, expected returns and power — checked against independent counts; nothing is written."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from mm_campaign_shop import ZONES, consent_status
from sqlalchemy import func, select
from typer.testing import CliRunner

from micromarketing.campaigns.assign import CONTROL, GLOBAL_HOLDOUT, assign_arms, in_global_holdout
from micromarketing.campaigns.plan import plan_campaign
from micromarketing.campaigns.spec import parse_spec
from micromarketing.cli.main import app
from micromarketing.config import CampaignSettings
from micromarketing.errors import InvalidInputError, TemplateError
from micromarketing.measure.power import minimum_detectable_lift
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

START = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # 13:00 Paris, 07:00 New York, 21:00 Tokyo
WINDOW = "send_window: {start: 2030-01-07T12:00:00Z, end: 2030-01-09T12:00:00Z}\n"
QUIET_ZONES = {"America/New_York", "Asia/Tokyo"}

TWO_VARIANTS = (
    "name: NAME\ncontrol_share: 0.2\nEXTRA" + WINDOW + "segments:\n"
    "  - segment: lyon\n    variants:\n"
    "      - {name: a, template: winback, offer: spring10, channel: email, share: 0.5}\n"
    "      - {name: b, template: winback, channel: email, share: 0.5}\n"
)


def _text(name: str, extra: str = "") -> str:
    return TWO_VARIANTS.replace("NAME", name).replace("EXTRA", extra)


def _one_variant(name: str, variant: str) -> str:
    return f"name: {name}\n" + WINDOW + f"segments:\n  - segment: lyon\n    variants: [{variant}]\n"


def _spec(name: str = "p1", extra: str = "", text: str | None = None):
    return parse_spec(text or _text(name, extra), f"{name}.yaml")


def _lyon_ids() -> list[str]:
    return [f"c{i:04d}" for i in range(0, 600, 2)]


def test_counts_match_an_independent_computation(shop):
    plan = plan_campaign(shop.context, _spec(), when=START)
    ids = _lyon_ids()
    arms = assign_arms("p1", ids, 0.2, [("a", 0.5), ("b", 0.5)])
    assert plan.members == 300 and plan.control == int((arms == CONTROL).sum())
    seg = plan.segments[0]
    for v in seg.variants:
        mine = [i for i, arm in zip(range(0, 600, 2), arms, strict=True) if arm == v.variant]
        no_consent = [i for i in mine if consent_status(i) != "opt_in"]
        sendable = [i for i in mine if consent_status(i) == "opt_in"]
        deferred = [i for i in sendable if ZONES[i % len(ZONES)] in QUIET_ZONES]
        assert v.members == len(mine)
        assert v.removed == {
            "no_consent": len(no_consent),
            "suppressed": 0,
            "frequency_cap": 0,
            "no_address": 0,
        }
        assert v.deferred == len(deferred)
        assert v.reach == len(sendable)
        mde = minimum_detectable_lift(v.reach, plan.control, v.response_rate)
        assert v.mde_relative == pytest.approx(mde.relative)
    assert plan.reach == sum(v.reach for v in seg.variants)
    assert plan.planned_for == START


def test_economics_follow_the_printed_assumptions(shop):
    plan = plan_campaign(shop.context, _spec(), when=START)
    a, b = plan.segments[0].variants
    assert a.response_rate == 0.05 and b.response_rate == 0.02  # priors: discount offer, no offer
    assert a.expected_conversions == pytest.approx(a.reach * 0.05)
    aov = a.expected_revenue / a.expected_conversions
    # spring10: 10 % off the order plus 0.5 per redemption, plus [campaigns] email_cost per message
    email = shop.settings.campaigns.email_cost
    assert a.cost == pytest.approx(round(a.expected_conversions * (0.5 + aov * 0.10) + a.reach * email, 2))
    assert a.expected_margin == pytest.approx(a.expected_revenue * shop.settings.clv.margin)
    assert a.roi == pytest.approx((a.expected_margin - a.cost) / a.cost, rel=1e-3)  # cost is shown rounded
    assert b.cost == pytest.approx(round(b.reach * email, 2))
    assert any("response rate 5.00% from prior for a discount offer" in line for line in plan.assumptions)
    assert any("no DKIM key" in w for w in plan.warnings)
    assert any("too small to measure" in w for w in plan.warnings)


def test_nothing_is_written(shop):
    plan_campaign(shop.context, _spec("p_written"), when=START)
    with shop.ops.session() as s:
        for model in (Campaign, Assignment, OutboxMessage):
            assert s.scalar(select(func.count()).select_from(model)) == 0


def test_overlapping_segments_count_a_member_once(shop):
    if "lyon_or_big" not in {s.name for s in shop.segments.list()}:
        shop.segments.create("lyon_or_big", "city = 'Lyon' or city = 'Paris'")
    text = (
        "name: p_overlap\n" + WINDOW + "segments:\n"
        "  - segment: lyon\n    variants: [{name: a, template: winback, share: 1}]\n"
        "  - segment: lyon_or_big\n    variants: [{name: a, template: winback, share: 1}]\n"
    )
    plan = plan_campaign(shop.context, _spec(text=text), when=START)
    first, second = plan.segments
    assert first.members == 300 and second.members == 300 and second.in_earlier_segment == 300
    assert plan.members == 600


def test_budget_below_cost_warns_in_the_plan(shop):
    plan = plan_campaign(
        shop.context, _spec("p_budget", extra="budget: 1\n"), when=START, source="p_budget.yaml"
    )
    assert any(w.startswith("p_budget.yaml: budget: 1 is below the plan's cost") for w in plan.warnings)


def test_sms_cost_counts_segments(shop):
    settings = shop.settings.model_copy(
        update={
            "channels": shop.settings.channels.model_copy(
                update={"sms": shop.settings.channels.sms.model_copy(update={"cost_per_segment": 0.05})}
            )
        }
    )
    ctx = dataclasses.replace(shop.context, settings=settings)
    text = (
        "name: p_sms\n"
        + WINDOW
        + "segments:\n  - segment: lyon\n    variants: [{name: s, template: ping, channel: sms, share: 1}]\n"
    )
    plan = plan_campaign(ctx, _spec(text=text), when=START)
    v = plan.segments[0].variants[0]
    consented = [i for i in range(0, 600, 2) if i % 3 == 0]
    arms = assign_arms("p_sms", _lyon_ids(), 0.1, [("s", 1.0)])
    treated = {i for i, arm in zip(range(0, 600, 2), arms, strict=True) if arm == "s"}
    assert v.reach == len(treated & set(consented))
    assert v.cost_per_message == pytest.approx(0.05)  # these short texts fit one GSM-7 segment
    assert v.cost == pytest.approx(round(v.reach * 0.05, 2))


def test_global_holdout_is_left_out(shop):
    settings = shop.settings.model_copy(update={"campaigns": CampaignSettings(global_holdout_share=0.2)})
    ctx = dataclasses.replace(shop.context, settings=settings)
    plan = plan_campaign(ctx, _spec("p_holdout"), when=START)
    expected = int(in_global_holdout(_lyon_ids(), settings.campaigns, START).sum())
    assert plan.global_holdout == expected > 0
    v = plan.segments[0].variants
    assert plan.members == plan.control + plan.global_holdout + sum(x.members for x in v)
    arms = assign_arms("p_holdout", _lyon_ids(), 0.2, [("a", 0.5), ("b", 0.5)])
    held = in_global_holdout(_lyon_ids(), settings.campaigns, START)
    assert plan.control == int(((arms == CONTROL) & ~held).sum())
    assert GLOBAL_HOLDOUT not in {x.variant for x in v}


def test_a_variant_that_does_not_render_is_named(shop):
    if "strict" not in {t.name for t in shop.templates.list()}:
        shop.templates.add("strict", {"subject": "Hi", "text": "Dear {{ last_name }}"})
    text = (
        "name: p_strict\n"
        + WINDOW
        + "segments:\n  - segment: lyon\n    variants: [{name: x, template: strict, share: 1}]\n"
    )
    with pytest.raises(
        TemplateError, match=r"segment 'lyon', variant 'x' does not render: .*missing field.*last_name"
    ):
        plan_campaign(shop.context, _spec(text=text), when=START)


def test_unknown_references_fail_before_anything(shop):
    text = _text("p_bad").replace("segment: lyon", "segment: nowhere")
    with pytest.raises(InvalidInputError, match=r"segments\[0\]\.segment: unknown segment 'nowhere'"):
        plan_campaign(shop.context, _spec(text=text), when=START)


def test_cli_plan_json_has_integer_totals(shop, tmp_path):
    path = tmp_path / "p_cli.yaml"
    path.write_text(_text("p_cli"))
    result = CliRunner().invoke(app, ["campaign", "plan", str(path), "--json", "-w", str(shop.root)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("members", "control", "reach"):
        assert isinstance(data[key], int)
    assert data["members"] == 300
    variant = data["segments"][0]["variants"][0]
    assert {"members", "removed", "reach", "cost", "expected_conversions", "roi", "mde_relative"} <= set(
        variant
    )
    text = CliRunner().invoke(app, ["campaign", "plan", str(path), "-w", str(shop.root)])
    assert text.exit_code == 0 and "Assumptions" in text.stdout
    bad = CliRunner().invoke(app, ["campaign", "plan", str(tmp_path / "nope.yaml"), "-w", str(shop.root)])
    assert bad.exit_code == 2 and "no such file" in bad.output
