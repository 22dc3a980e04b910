"""The contact policy, rule by rule, at plan time (vectorised) and send time (decide): consent
ledger, suppressions, frequency caps in the recipient's time zone with priorities, quiet hours
across midnight and DST, transactional exemptions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mm_campaign_shop import consent_status, customer_ids
from sqlalchemy import delete

from micromarketing.campaigns.policy import (
    QuietHours,
    address_hash,
    cap_window_start,
    decide,
    decide_many,
    evaluate_members,
    parse_frequency_cap,
    parse_quiet_hours,
    quiet_until,
)
from micromarketing.config import PolicySettings
from micromarketing.store.models import Campaign, OutboxMessage, Suppression

NO_QUIET = PolicySettings(quiet_hours="", frequency_cap="")
NOON = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
_keys = count()


def _ctx(ws, policy: PolicySettings):
    return dataclasses.replace(ws.context, settings=ws.settings.model_copy(update={"policy": policy}))


def _campaign(ws, name: str, priority: int = 0) -> int:
    with ws.ops.session() as s:
        row = Campaign(name=name, priority=priority)
        s.add(row)
        s.flush()
        return row.id


def _outbox(ws, customer_id: str, **values) -> OutboxMessage:
    values.setdefault("channel", "email")
    with ws.ops.session() as s:
        key = f"k{next(_keys)}"
        row = OutboxMessage(idempotency_key=key, message_id=key, customer_id=customer_id, **values)
        s.add(row)
    return row


@pytest.fixture
def clean(shop):
    yield shop
    with shop.ops.session() as s:
        s.execute(delete(OutboxMessage))
        s.execute(delete(Suppression))
        s.execute(delete(Campaign))


def _members(ids, zones=None) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ids, "timezone": zones or [None] * len(ids)})


# -- settings -----------------------------------------------------------------------------------
def test_parse_settings():
    assert parse_quiet_hours("21:00-08:00") == QuietHours(time(21), time(8))
    assert parse_quiet_hours("") is None
    assert parse_frequency_cap("2/7d").messages == 2 and parse_frequency_cap("2/7d").days == 7
    assert parse_frequency_cap("") is None
    with pytest.raises(ValueError):
        PolicySettings(quiet_hours="9pm-8am")
    with pytest.raises(ValueError):
        PolicySettings(frequency_cap="2 per week")
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        PolicySettings(timezone="Europe/Lyon")


# -- consent ------------------------------------------------------------------------------------
def test_consent_ledger_latest_record_wins(clean):
    ids = customer_ids()
    verdict = evaluate_members(clean.context, _members(ids), channel="email", when=NOON, policy=NO_QUIET)
    for i, (outcome, reason) in enumerate(zip(verdict.outcome, verdict.reason, strict=True)):
        expected = consent_status(i)
        if expected == "opt_in":
            assert outcome == "send", i
        else:
            assert outcome == "no_consent", i
            assert reason == (
                "no_consent: no email consent on record"
                if expected is None
                else "no_consent: latest email consent is opt_out"
            )
    sms = evaluate_members(clean.context, _members(ids), channel="sms", when=NOON, policy=NO_QUIET)
    assert (sms.outcome == "send").sum() == len([i for i in range(len(ids)) if i % 3 == 0])
    ctx = _ctx(clean, NO_QUIET)
    with clean.ops.session() as s:
        decisions = decide_many(ctx, s, [_outbox(clean, ids[i]) for i in (0, 4, 7)], NOON)
    assert [d.action for d in decisions] == ["send", "skip", "skip"]
    assert decisions[2].reason == "no_consent: latest email consent is opt_out"


# -- suppressions -------------------------------------------------------------------------------
def test_suppressions_any_channel_or_one(clean):
    ids = ["c0000", "c0001", "c0002"]
    with clean.ops.session() as s:
        s.add(Suppression(customer_id="c0000", channel=None, kind="hard_bounce"))
        s.add(Suppression(customer_id="c0001", channel="sms", kind="complaint"))
        s.add(Suppression(customer_id="c0002", channel="email", kind="unsubscribe"))
    email = evaluate_members(clean.context, _members(ids), channel="email", when=NOON, policy=NO_QUIET)
    assert list(email.outcome) == ["suppressed", "send", "suppressed"]
    assert email.reason[0] == "suppressed: suppression list (hard_bounce)"
    # transactional: marketing unsubscribes do not apply, hard bounces do; consent is not needed
    tx = evaluate_members(
        clean.context,
        _members(ids + ["c0004"]),
        channel="email",
        when=NOON,
        policy=NO_QUIET,
        transactional=True,
    )
    assert list(tx.outcome) == ["suppressed", "send", "send", "send"]
    ctx = _ctx(clean, NO_QUIET)
    with clean.ops.session() as s:
        d = decide(ctx, s, _outbox(clean, "c0002", transactional=True), NOON)
        assert d.action == "send" and "transactional" in d.reason
        assert (
            decide(ctx, s, _outbox(clean, "c0002"), NOON).reason
            == "suppressed: suppression list (unsubscribe)"
        )


def test_a_pause_from_the_preference_centre_lapses_after_its_last_day(fresh_shop):
    """Paused for 7 days: an opt_out in the ledger that ends at midnight after the 7th day, so
    refused through consent at plan and send time through the 7th day and sent from the 8th,
    decided at explicit moments (no write when it lapses); no suppression row is involved.
    (Its own copy of the shop: the pause outlasts every fixed moment the other tests use.)"""
    ws = fresh_shop
    from micromarketing.personalize.templates import token_secret
    from micromarketing.tokens import unsubscribe_token

    assert consent_status(0) == "opt_in"
    change = ws.preferences.pause(unsubscribe_token(token_secret(ws.context), "c0000"), days=7)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert change.preferences.paused_until == (start + timedelta(days=7)).date()
    end = start + timedelta(days=8)
    # c0000 is opted in to email and sms: both are paused (nothing else is, nothing to stop there)
    assert [(r.channel, r.status, r.valid_until) for r in change.recorded] == [
        ("email", "opt_out", end), ("sms", "opt_out", end)]
    with ws.ops.session() as s:
        assert s.query(Suppression).count() == 0
    ctx = _ctx(ws, NO_QUIET)
    moments = {
        "now": (datetime.now(UTC), "no_consent"),
        "last paused instant": (end - timedelta(microseconds=1), "no_consent"),
        "pause end": (end, "send"),
        "a day later": (end + timedelta(days=1), "send"),
    }
    for label, (when, outcome) in moments.items():
        verdict = evaluate_members(ws.context, _members(["c0000", "c0001"]), channel="email", when=when,
                                   policy=NO_QUIET)
        assert list(verdict.outcome) == [outcome, "send"], label
        with ws.ops.session() as s:
            decision = decide(ctx, s, _outbox(ws, "c0000"), when)
        assert decision.action == ("skip" if outcome == "no_consent" else "send"), label
        if outcome == "no_consent":
            assert verdict.reason[0] == decision.reason == "no_consent: latest email consent is opt_out"
    sms = evaluate_members(ws.context, _members(["c0000"]), channel="sms", when=end - timedelta(hours=1),
                           policy=NO_QUIET)
    assert list(sms.outcome) == ["no_consent"]
    assert {r.channel: r.status for r in ws.privacy.consent("c0000", at=end)} == {
        "email": "opt_in", "sms": "opt_in"}


def test_suppressed_address_from_a_provider_export(clean):
    """``suppress import`` stores hashed addresses, no customer id: the address on the row decides."""
    with clean.ops.session() as s:
        s.add(
            Suppression(
                subject_hash=address_hash("email", " C0006@Example.com"), channel="email", kind="complaint"
            )
        )
    members = _members(["c0006", "c0005"]).assign(address=["c0006@example.com", "c0005@example.com"])
    verdict = evaluate_members(clean.context, members, channel="email", when=NOON, policy=NO_QUIET)
    assert list(verdict.outcome) == ["suppressed", "send"]
    ctx = _ctx(clean, NO_QUIET)
    with clean.ops.session() as s:
        d = decide(ctx, s, _outbox(clean, "c0006", fields={"email": "c0006@example.com"}), NOON)
    assert d.action == "skip" and d.reason == "suppressed: suppression list (complaint)"


# -- frequency cap ------------------------------------------------------------------------------
def test_cap_counts_sent_and_sending_in_the_local_window(clean):
    policy = PolicySettings(quiet_hours="", frequency_cap="1/1d")
    other = _campaign(clean, "other")
    # sent at 23:30 UTC on July 1: July 2 in Tokyo (counts there), July 1 in New York (does not)
    for cid in ("c0000", "c0001"):
        _outbox(clean, cid, campaign_id=other, state="sent", sent_at=datetime(2026, 7, 1, 23, 30, tzinfo=UTC))
    _outbox(clean, "c0010", campaign_id=other, state="sending")
    _outbox(clean, "c0020", campaign_id=other, state="sent", sent_at=NOON - timedelta(hours=1), is_test=True)
    _outbox(
        clean, "c0030", campaign_id=other, state="sent", sent_at=NOON - timedelta(hours=1), transactional=True
    )
    members = _members(
        ["c0000", "c0001", "c0010", "c0020", "c0030"],
        ["Asia/Tokyo", "America/New_York", "Europe/Paris", "Europe/Paris", "Europe/Paris"],
    )
    verdict = evaluate_members(clean.context, members, channel="email", when=NOON, policy=policy)
    assert list(verdict.outcome) == ["frequency_cap", "send", "frequency_cap", "send", "send"]
    assert verdict.reason[0] == "frequency_cap: 1 per 1d reached on email"
    # a cap on email does not limit sms
    sms = evaluate_members(clean.context, members.iloc[:1], channel="sms", when=NOON, policy=policy)
    assert list(sms.outcome) == ["send"]
    ctx = _ctx(clean, policy)
    mine = _campaign(clean, "mine")
    with clean.ops.session() as s:
        tokyo = _outbox(clean, "c0000", campaign_id=mine, fields={"_tz": "Asia/Tokyo"})
        new_york = _outbox(clean, "c0001", campaign_id=mine, fields={"_tz": "America/New_York"})
        assert [d.action for d in decide_many(ctx, s, [tokyo, new_york], NOON)] == ["skip", "send"]


def test_cap_window_start_is_local_midnight_across_dst():
    # 7 local days back from 2026-03-31 noon in Paris start on 2026-03-25 00:00 CET (UTC+1)
    assert cap_window_start(datetime(2026, 3, 31, 10, tzinfo=UTC), PARIS, 7) == datetime(
        2026, 3, 24, 23, tzinfo=UTC
    )
    # after the change the same count of days starts at 00:00 CEST (UTC+2)
    assert cap_window_start(datetime(2026, 4, 10, 10, tzinfo=UTC), PARIS, 7) == datetime(
        2026, 4, 3, 22, tzinfo=UTC
    )
    # a zone whose clocks skip midnight (Havana, 2026-03-08): the window opens when they resume
    havana = ZoneInfo("America/Havana")
    assert cap_window_start(datetime(2026, 3, 8, 18, tzinfo=UTC), havana, 1) == datetime(
        2026, 3, 8, 5, tzinfo=UTC
    )


def test_priority_decides_when_caps_collide(clean):
    policy = PolicySettings(quiet_hours="", frequency_cap="1/7d")
    low = _campaign(clean, "low", priority=0)
    high = _campaign(clean, "high", priority=5)
    ctx = _ctx(clean, policy)
    due = NOON - timedelta(hours=1)
    high_msg = _outbox(clean, "c0000", campaign_id=high, priority=5, fields={"_tz": "UTC"}, not_before=due)
    low_msg = _outbox(clean, "c0000", campaign_id=low, priority=0, fields={"_tz": "UTC"}, not_before=due)
    # plan time: the waiting higher-priority message counts for the lower one, not the reverse
    members = _members(["c0000"])
    assert (
        evaluate_members(ctx, members, channel="email", when=NOON, priority=0, campaign_id=low).outcome[0]
        == "frequency_cap"
    )
    assert (
        evaluate_members(ctx, members, channel="email", when=NOON, priority=5, campaign_id=high).outcome[0]
        == "send"
    )
    with clean.ops.session() as s:
        low_first = decide(ctx, s, low_msg, NOON)
        assert low_first.action == "defer" and low_first.not_before > NOON
        assert decide(ctx, s, high_msg, NOON).action == "send"
    with clean.ops.session() as s:
        s.get(OutboxMessage, high_msg.id).state = "sent"
        s.get(OutboxMessage, high_msg.id).sent_at = NOON
    with clean.ops.session() as s:
        later = decide(ctx, s, low_msg, NOON + timedelta(minutes=11))
    assert later.action == "skip" and later.rule == "frequency_cap"


# -- quiet hours --------------------------------------------------------------------------------
def test_quiet_hours_defer_to_the_local_window_end(clean):
    policy = PolicySettings(quiet_hours="21:00-08:00", frequency_cap="")
    ctx = _ctx(clean, policy)
    late = datetime(2026, 7, 2, 20, 30, tzinfo=UTC)  # 22:30 in Paris, 16:30 in New York
    members = _members(["c0000", "c0001", "c0002"], ["Europe/Paris", "America/New_York", None])
    verdict = evaluate_members(ctx, members, channel="email", when=late)
    assert list(verdict.outcome) == ["quiet_hours", "send", "send"]
    assert verdict.not_before[0] == pd.Timestamp("2026-07-03T06:00:00Z")  # 08:00 CEST
    assert verdict.not_before[1] == pd.Timestamp(late)
    with clean.ops.session() as s:
        d = decide(ctx, s, _outbox(clean, "c0000", fields={"_tz": "Europe/Paris"}), late)
        # no tz frozen on the row: read from the customers table (c0005 is Europe/Paris there)
        from_table = decide(ctx, s, _outbox(clean, "c0005"), late)
        tx = decide(ctx, s, _outbox(clean, "c0000", transactional=True), late)
    assert d.action == "defer" and d.not_before == datetime(2026, 7, 3, 6, tzinfo=UTC)
    assert d.reason.startswith("quiet_hours:")
    assert from_table.not_before == d.not_before
    assert tx.action == "send"


@pytest.mark.parametrize(
    ("zone_name", "now", "expected"),
    [
        # Paris springs forward on 2026-03-29 at 02:00: 23:00 CET → 08:00 CEST, 8 hours later
        ("Europe/Paris", datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 3, 29, 6, tzinfo=UTC)),
        # and falls back on 2026-10-25: 23:00 CEST → 08:00 CET, 10 hours later
        ("Europe/Paris", datetime(2026, 10, 24, 21, tzinfo=UTC), datetime(2026, 10, 25, 7, tzinfo=UTC)),
        # New York springs forward on 2026-03-08
        ("America/New_York", datetime(2026, 3, 8, 3, tzinfo=UTC), datetime(2026, 3, 8, 12, tzinfo=UTC)),
        # after midnight, before 08:00: same local day
        ("Asia/Tokyo", datetime(2026, 7, 1, 16, tzinfo=UTC), datetime(2026, 7, 1, 23, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_dst(zone_name, now, expected):
    assert quiet_until(now, ZoneInfo(zone_name), QuietHours(time(21), time(8))) == expected


def test_send_window_end_and_test_messages(clean):
    ctx = _ctx(clean, PolicySettings())
    with clean.ops.session() as s:
        closed = decide(
            ctx, s, _outbox(clean, "c0000", fields={"_window_end": "2026-07-01T00:00:00+00:00"}), NOON
        )
        proof = decide(ctx, s, _outbox(clean, "c0004", is_test=True), NOON)
    assert closed.action == "skip" and closed.rule == "send_window"
    assert proof.action == "send" and "test" in proof.reason


ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Asia/Tokyo",
        "Australia/Lord_Howe",
        "America/Havana",
        "Pacific/Chatham",
        "Asia/Kolkata",
    ]
)
CLOCK = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@settings(max_examples=400, deadline=None)
@given(
    start=CLOCK,
    end=CLOCK,
    zone_name=ZONES,
    offset_minutes=st.integers(0, 2 * 366 * 24 * 60),
)
def test_quiet_window_property(start, end, zone_name, offset_minutes):
    """Inside the window (crossing midnight or not) a message is deferred to the first moment the
    local clock reads the window's end, and no moment before that is outside the window."""
    if start == end:
        return
    tz = ZoneInfo(zone_name)
    window = QuietHours(start, end)
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=offset_minutes)
    until = quiet_until(now, tz, window)
    local = now.astimezone(tz).time()
    inside = (start <= local < end) if start < end else (local >= start or local < end)
    assert (until is not None) == inside
    if until is None:
        return
    assert now < until <= now + timedelta(hours=26)
    assert not window.contains(until.astimezone(tz).time())
    step = now
    while step + timedelta(minutes=15) < until:  # every quarter hour before the end is still quiet
        step += timedelta(minutes=15)
        assert window.contains(step.astimezone(tz).time()), step


def test_a_batch_decides_like_one_message_at_a_time(clean):
    policy = PolicySettings(quiet_hours="21:00-08:00", frequency_cap="1/7d")
    ctx = _ctx(clean, policy)
    other = _campaign(clean, "batch_other")
    _outbox(clean, "c0010", campaign_id=other, state="sent", sent_at=NOON - timedelta(days=1))
    with clean.ops.session() as s:
        s.add(Suppression(customer_id="c0012", channel=None, kind="manual"))
    late = datetime(2026, 7, 2, 20, 30, tzinfo=UTC)
    messages = [
        _outbox(clean, f"c{i:04d}", channel=channel, transactional=(i % 11 == 0), fields={"_tz": tz})
        for i, (channel, tz) in enumerate(
            [("email", "Europe/Paris"), ("sms", "Asia/Tokyo"), ("email", "America/New_York")] * 6
        )
    ]
    with clean.ops.session() as s:
        batch = decide_many(ctx, s, messages, late)
        single = [decide(ctx, s, m, late) for m in messages]
    assert batch == single
    assert {d.action for d in batch} == {"send", "skip", "defer"}


# -- a batch decides like one message at a time, and like the rules say -------------------------
SHOP_PEOPLE = [f"c{i:04d}" for i in range(6)]  # shop zones: Paris, New York, Tokyo, none, invalid
CHANNELS = ("email", "sms", "webhook")
_CONSENT_OF = {"email": "email", "sms": "sms", "webhook": "push"}
DAY0 = datetime(2025, 6, 1, tzinfo=UTC)  # after every consent record of the shop

consent_records = st.lists(
    st.tuples(
        st.sampled_from(SHOP_PEOPLE),
        st.sampled_from(sorted(set(_CONSENT_OF.values()))),
        st.sampled_from(["opt_in", "opt_out"]),
        st.integers(0, 2),  # day: equal days tie, and the status breaks the tie
        st.sampled_from(["marketing", "newsletter"]),
    ),
    max_size=8,
    unique_by=lambda r: (r[0], r[1], r[4], r[3]),  # the ledger's key
)
suppression_rows = st.lists(
    st.tuples(
        st.sampled_from(SHOP_PEOPLE),
        st.booleans(),  # by the address hash (a provider export) rather than the customer id
        st.sampled_from([None, "email", "sms"]),
        st.sampled_from(["hard_bounce", "unsubscribe", "complaint"]),
    ),
    max_size=3,
)
outbox_rows = st.lists(
    st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(SHOP_PEOPLE),
            "channel": st.sampled_from(CHANNELS),
            "state": st.sampled_from(["sent", "sending", "pending", "deferred", "skipped"]),
            "priority": st.integers(0, 2),
            "hours_ago": st.integers(-30, 200),  # sent_at and not_before, relative to now
            "is_test": st.booleans(),
            "transactional": st.booleans(),
        }
    ),
    max_size=8,
)
batch_messages = st.lists(
    st.fixed_dictionaries(
        {
            "customer_id": st.sampled_from(SHOP_PEOPLE),
            "channel": st.sampled_from(CHANNELS),
            "priority": st.integers(0, 2),
            "transactional": st.booleans(),
            "is_test": st.sampled_from([False] * 5 + [True]),
            "tz": st.sampled_from([None, "Asia/Kolkata", "America/Havana"]),
            "address": st.booleans(),
        }
    ),
    min_size=1,
    max_size=8,
)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _expected_rule(ws, m: OutboxMessage, now: datetime, policy: PolicySettings, consent, suppressed) -> str:
    """The rule the module docstring says decides ``m`` (``""``: send), computed from the generated
    situation without the module's queries: ``consent`` (the records added), ``suppressed`` rows."""
    if m.is_test:
        return ""
    i = int(m.customer_id[1:])
    shop = {"email": consent_status(i), "sms": "opt_in" if i % 3 == 0 else None, "push": None}
    channel = _CONSENT_OF[m.channel]
    mine = [  # campaigns ask for the marketing purpose; another topic's record does not decide
        (day, status)
        for cid, ch, status, day, purpose in consent
        if cid == m.customer_id and ch == channel and purpose == "marketing"
    ]
    status = max(mine)[1] if mine else shop[channel]
    if not m.transactional and status != "opt_in":
        return "no_consent"
    address = (m.fields or {}).get("email") if m.channel == "email" else None
    for cid, by_hash, channel_, kind in suppressed:
        hit = (by_hash and address == f"{cid}@example.com") or (not by_hash and cid == m.customer_id)
        if hit and channel_ in (None, m.channel) and not (m.transactional and kind == "unsubscribe"):
            return "suppressed"
    if m.transactional:
        return ""
    tz = ZoneInfo(
        (m.fields or {}).get("_tz")
        or {0: "Europe/Paris", 1: "America/New_York", 2: "Asia/Tokyo"}.get(i % 5, policy.timezone)
    )
    cap = parse_frequency_cap(policy.frequency_cap)
    if cap is not None:
        start = cap_window_start(now, tz, cap.days)
        with ws.ops.session() as s:
            others = [
                o
                for o in s.query(OutboxMessage).filter_by(customer_id=m.customer_id, channel=m.channel)
                if o.id != m.id and not o.is_test and not o.transactional
            ]

        def outranks(o: OutboxMessage) -> bool:
            return o.priority > m.priority or (o.priority == m.priority and o.id < m.id)

        sent = sum(
            (o.state == "sent" and o.sent_at is not None and _utc(o.sent_at) >= start)
            or (o.state == "sending" and outranks(o))
            for o in others
        )
        ahead = sum(
            o.state in ("pending", "deferred") and _utc(o.not_before) <= now and outranks(o) for o in others
        )
        if sent >= cap.messages or sent + ahead >= cap.messages:
            return "frequency_cap"
    return "quiet_hours" if quiet_until(now, tz, parse_quiet_hours(policy.quiet_hours)) else ""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    consent=consent_records,
    suppressed=suppression_rows,
    existing=outbox_rows,
    batch=batch_messages,
    cap=st.sampled_from(["", "1/1d", "2/7d"]),
    quiet=st.sampled_from(["", "21:00-08:00", "09:00-17:00"]),
    minutes=st.integers(0, 2 * 24 * 60),
)
def test_batched_decisions_equal_single_ones_and_the_rules(
    clean, consent, suppressed, existing, batch, cap, quiet, minutes
):
    """Generated consent ledgers (ties included), suppressions by id or address, other messages
    sent, in flight or waiting at several priorities, caps and quiet windows: the batch's decisions
    are the per-message ones, and each names the rule an independent reading of the rules expects."""
    policy = PolicySettings(quiet_hours=quiet, frequency_cap=cap)
    ctx = _ctx(clean, policy)
    now = DAY0 + timedelta(days=10, minutes=minutes)
    raw = clean.warehouse.con.con
    for record in consent:  # executemany refuses an empty list
        cid, ch, status, day, purpose = record
        raw.execute(
            "INSERT INTO consent (customer_id, channel, status, recorded_at, source, purpose) "
            "VALUES (?, ?, ?, ?, 'hypothesis', ?)",
            [cid, ch, status, DAY0 + timedelta(days=day), purpose],
        )
    try:
        with clean.ops.session() as s:
            for cid, by_hash, channel, kind in suppressed:
                s.add(
                    Suppression(
                        customer_id=None if by_hash else cid,
                        subject_hash=address_hash("email", f"{cid}@example.com") if by_hash else None,
                        channel=channel,
                        kind=kind,
                    )
                )
        for row in existing:
            at = now - timedelta(hours=row.pop("hours_ago"))
            _outbox(clean, row.pop("customer_id"), sent_at=at, not_before=at, **row)
        messages = [
            _outbox(
                clean,
                m["customer_id"],
                channel=m["channel"],
                state="sending",  # as the worker claimed them
                priority=m["priority"],
                transactional=m["transactional"],
                is_test=m["is_test"],
                fields={
                    **({"_tz": m["tz"]} if m["tz"] else {}),
                    **({"email": f"{m['customer_id']}@example.com"} if m["address"] else {}),
                },
            )
            for m in batch
        ]
        with clean.ops.session() as s:
            decided = decide_many(ctx, s, messages, now)
            assert decided == [decide(ctx, s, m, now) for m in messages]
        for m, d in zip(messages, decided, strict=True):
            assert d.rule == _expected_rule(clean, m, now, policy, consent, suppressed), (m.id, d)
    finally:
        raw.execute("DELETE FROM consent WHERE source = 'hypothesis'")
        with clean.ops.session() as s:
            s.execute(delete(OutboxMessage))
            s.execute(delete(Suppression))
