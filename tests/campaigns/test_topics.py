"""Campaign topics: a person who left a topic (in the preference centre) is refused for the
campaigns of that topic at plan and at send time, while other topics and campaigns without one
still reach them; a spec naming a topic that is not configured is refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from micromarketing.campaigns.policy import decide_many
from micromarketing.campaigns.run import run_campaign
from micromarketing.campaigns.spec import check_references, parse_spec
from micromarketing.config import PolicySettings, PreferenceSettings
from micromarketing.errors import InvalidInputError
from micromarketing.privacy.consent import record_consent
from micromarketing.store.models import OutboxMessage

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
TOPICS = {"newsletter": "Our monthly newsletter", "offers": "Offers and discounts"}
# Lyon customers opted in to email (shop.consent_status), in Paris time (13:00: no quiet hours)
LEAVER, STAYER, LATE_LEAVER = "c0000", "c0010", "c0020"


def _spec(name: str, extra: str = ""):
    text = (
        f"name: {name}\ncontrol_share: 0\n{extra}segments:\n  - segment: lyon\n    variants:\n"
        "      - {name: a, template: winback, channel: email, share: 1}\n"
    )
    return parse_spec(text, f"{name}.yaml")


def _ctx(ws, **update):
    settings = ws.settings.model_copy(update={"preferences": PreferenceSettings(topics=TOPICS), **update})
    return dataclasses.replace(ws.context, settings=settings)


def _outbox(ws, campaign_id: int) -> dict[str, OutboxMessage]:
    with ws.ops.session() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.campaign_id == campaign_id))
        return {m.customer_id: m for m in rows}


def test_a_topic_left_is_refused_at_plan_and_at_send(fresh_shop):
    ctx = _ctx(fresh_shop)
    for channel in ("email", "sms"):  # as the preference centre records it: every channel
        record_consent(ctx, LEAVER, channel, "opt_out", purpose="offers", source="preference centre")
    record_consent(ctx, STAYER, "email", "opt_in", purpose="offers", source="preference centre")

    offers = _outbox(fresh_shop, run_campaign(ctx, _spec("o1", "topic: offers\n"), now=NOW).campaign_id)
    assert offers[LEAVER].state == "skipped"
    assert offers[LEAVER].reason == "no_consent: left the topic 'offers' on email (preference centre)"
    assert offers[STAYER].state == offers[LATE_LEAVER].state == "pending"
    assert offers[STAYER].fields["_topic"] == "offers"
    # the same person is still reached by another topic's campaign and by one without a topic
    for name, extra in (("n1", "topic: newsletter\n"), ("g1", "")):
        other = _outbox(fresh_shop, run_campaign(ctx, _spec(name, extra), now=NOW).campaign_id)
        assert other[LEAVER].state == "pending", (name, other[LEAVER].reason)

    # leaving after the run: the send-time check refuses the frozen row, the others still go
    record_consent(ctx, LATE_LEAVER, "email", "opt_out", purpose="offers", source="preference centre")
    send_ctx = _ctx(fresh_shop, policy=PolicySettings(quiet_hours="", frequency_cap=""))
    with fresh_shop.ops.session() as s:
        rows = [s.get(OutboxMessage, offers[c].id) for c in (LATE_LEAVER, STAYER)]
        decisions = decide_many(send_ctx, s, rows, NOW)
    assert [d.action for d in decisions] == ["skip", "send"]
    assert decisions[0].reason == "no_consent: left the topic 'offers' on email (preference centre)"
    # a later opt_in (back in the preference centre) wins again
    record_consent(ctx, LATE_LEAVER, "email", "opt_in", purpose="offers", source="preference centre")
    with fresh_shop.ops.session() as s:
        again = decide_many(send_ctx, s, [s.get(OutboxMessage, offers[LATE_LEAVER].id)], NOW)
    assert again[0].action == "send"


def test_a_topic_must_be_configured(shop):
    with pytest.raises(InvalidInputError, match=r"t1.yaml: topic: unknown topic 'weekly' .*none are"):
        check_references(shop.context, _spec("t1", "topic: weekly\n"), "t1.yaml")
    with pytest.raises(InvalidInputError, match=r"known: newsletter, offers"):
        check_references(_ctx(shop), _spec("t1", "topic: weekly\n"), "t1.yaml")
    with pytest.raises(InvalidInputError, match="transactional campaign has no topic"):
        check_references(_ctx(shop), _spec("t1", "topic: offers\ntransactional: true\n"), "t1.yaml")
    check_references(_ctx(shop), _spec("t1", "topic: offers\n"), "t1.yaml")


def test_a_spec_without_a_topic_keeps_its_fingerprint():
    """Specs stored before topics existed keep their sha256 (a re-run compares it): the value is
    the one the code before topics computed for this file."""
    assert _spec("f1").sha256 == "d29f91305de01092b7a61b44b68ff5b6a48d331ee2e32881ba0f008f40c89e2e"
    assert _spec("f1", "topic: offers\n").sha256 != _spec("f1").sha256
