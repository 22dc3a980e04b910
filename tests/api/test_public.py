"""The customer's own routes: one-click unsubscribe (RFC 8058) and the preference centre."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing import Workspace


def _suppressions(root, customer_id):
    db = sqlite3.connect(root / "ops.sqlite")
    return db.execute(
        "SELECT kind, channel, source FROM suppressions WHERE customer_id = ?", [customer_id]
    ).fetchall()


def _ledger(root, customer_id, *, ends=False):
    with Workspace.open(root) as ws:
        t = ws.table("consent")
        rows = t.filter(t.customer_id == customer_id).order_by("recorded_at").to_pyarrow().to_pylist()
    return [(r["channel"], r["status"], r["source"], *([r["valid_until"]] if ends else [])) for r in rows]


def test_unsubscribe_page_then_one_click_urlencoded(served):
    token = served.token()
    page = served.client.get(f"/u/{token}")
    assert page.status_code == 200 and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "set-cookie" not in page.headers
    r = served.client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200 and "unsubscribed" in r.text
    assert "set-cookie" not in r.headers and "location" not in r.headers
    assert ("unsubscribe", "email", "preference centre") in _suppressions(served.root, served.customer_id)
    assert _ledger(served.root, served.customer_id)[-1] == ("email", "opt_out", "preference centre")
    with Workspace.open(served.root) as ws:  # the latest record wins: email is now opted out
        assert ws.customer(served.customer_id).consent["email"] == "opt_out"


def test_one_click_works_as_multipart(served):
    token = served.token()
    r = served.client.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200, r.text
    assert ("unsubscribe", "email", "preference centre") in _suppressions(served.root, served.customer_id)


def test_one_click_without_the_field_changes_nothing(served):
    r = served.client.post(f"/u/{served.token()}", data={"List-Unsubscribe": "Yes"})
    assert r.status_code == 422
    assert _suppressions(served.root, served.customer_id) == []


def test_preference_centre_records_every_change_in_the_ledger(served):
    token, cid = served.token(), served.customer_id
    c = served.client
    page = c.get(f"/preferences/{token}")
    assert page.status_code == 200 and 'id="ch-sms"' in page.text
    saved = c.post(f"/preferences/{token}", data={"action": "save", "channel": ["sms", "post"]})
    assert saved.status_code == 200
    ledger = _ledger(served.root, cid)
    latest = {ch: status for ch, status, src in ledger if src == "preference centre"}
    assert latest == {"email": "opt_out", "sms": "opt_in", "push": "opt_out", "post": "opt_in",
                      "ads": "opt_out", "phone": "opt_out"}

    before_pause = _ledger(served.root, cid)
    paused = c.post(f"/preferences/{token}", data={"action": "pause", "days": "14"})
    last_day = (datetime.now(UTC) + timedelta(days=14)).date()
    assert paused.status_code == 200 and f"until {last_day}" in paused.text
    assert _suppressions(served.root, cid) == []  # a pause is consent with an end, no suppression
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
    pause = [("sms", "opt_out", "preference centre", end), ("post", "opt_out", "preference centre", end)]
    assert sorted(_ledger(served.root, cid, ends=True)[len(before_pause):]) == sorted(pause)
    with Workspace.open(served.root) as ws:  # refused now, the opt_ins are back at the end
        assert ws.customer(cid).consent["sms"] == "opt_out"
        assert {r.channel: r.status for r in ws.privacy.consent(cid, at=end)}["sms"] == "opt_in"
    page = c.get(f"/preferences/{token}").text  # the page shows the pause and the choices after it
    assert f"paused until {last_day}" in page and re.search(r'value="sms"\s+checked', page)

    resumed = c.post(f"/preferences/{token}", data={"action": "resubscribe"})
    assert resumed.status_code == 200 and "pause is over" in resumed.text
    assert _suppressions(served.root, cid) == []
    restored = [("post", "opt_in", "preference centre", None), ("sms", "opt_in", "preference centre", None)]
    assert sorted(_ledger(served.root, cid, ends=True)[-2:]) == restored
    assert "paused" not in c.get(f"/preferences/{token}").text

    exported = c.get(f"/preferences/{token}/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    data = json.loads(exported.text)
    assert data["customer_id"] == cid and data["attributes"]["email"]
    assert len(data["consent"]) == len(_ledger(served.root, cid))
    assert sorted(r["channel"] for r in data["consent"] if r["valid_until"]) == ["post", "sms"]  # the pause

    erased = c.post(f"/preferences/{token}", data={"action": "erase"})
    assert erased.status_code == 200
    assert {s for _, s, _ in _ledger(served.root, cid)[-6:]} == {"opt_out"}
    with Workspace.open(served.root) as ws:
        db = sqlite3.connect(ws.root / "ops.sqlite")
        actions = [a for (a,) in db.execute("SELECT action FROM audit_log")]
    assert "privacy.erasure_requested" in actions


def test_a_pause_is_extended_never_shortened_and_an_unsubscribe_during_it_is_undone(served):
    token, cid, c = served.token(), served.customer_id, served.client
    today = datetime.now(UTC).date()

    def post(**form):
        r = c.post(f"/preferences/{token}", data=form)
        assert r.status_code == 200, r.text
        return r.text

    post(action="save")  # every channel opted out: a pause has nothing to stop
    assert "nothing to pause" in post(action="pause", days="5")
    assert _suppressions(served.root, cid) == [] and "paused" not in c.get(f"/preferences/{token}").text
    post(action="save", channel=["email"])
    assert f"until {today + timedelta(days=30)}" in post(action="pause", days="30")
    assert f"until {today + timedelta(days=30)}" in post(action="pause", days="7")  # the longer one holds
    ends = {end for ch, _, _, end in _ledger(served.root, cid, ends=True) if end}
    assert ends == {datetime.combine(today + timedelta(days=31), time(), tzinfo=UTC)}
    # a one-click unsubscribe during the pause is a lasting opt_out; resubscribing undoes it
    c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert "subscribed to our emails again" in post(action="resubscribe")
    assert _suppressions(served.root, cid) == []
    with Workspace.open(served.root) as ws:
        assert ws.customer(cid).consent["email"] == "opt_in"
        assert ws.preferences.preferences(token).paused_until is None


def test_invalid_preference_input_is_refused(shared):
    url = f"/preferences/{shared.token()}"
    forms = ({"action": "pause", "days": "0"}, {"action": "save", "channel": "fax"}, {"action": "explode"})
    for form in forms:
        r = shared.client.post(url, data=form)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), replacement=st.characters(categories=["L", "N"]))
def test_an_altered_token_is_404_and_nothing_else(shared, position, replacement):
    token = shared.token()
    i = position % len(token)
    altered = token[:i] + replacement + token[i + 1 :]
    if altered == token:
        return
    for method, url, body in (
        ("get", f"/u/{altered}", {}),
        ("post", f"/u/{altered}", {"data": {"List-Unsubscribe": "One-Click"}}),
        ("get", f"/preferences/{altered}", {}),
        ("get", f"/preferences/{altered}/export", {}),
    ):
        r = shared.client.request(method, url, **body)
        assert r.status_code == 404, (url, r.status_code)
        assert r.json()["detail"] == "not found"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(alphabet=st.characters(categories=["L", "N"], include_characters="-_"), min_size=1,
                     max_size=120))
def test_a_forged_token_is_404(shared, token):
    r = shared.client.get(f"/preferences/{token}")
    assert r.status_code == 404 and r.json()["detail"] == "not found"


def test_a_token_for_an_unknown_customer_is_404(shared):
    assert shared.client.get(f"/u/{shared.token('no-such-customer')}").status_code == 404


# -- topics ---------------------------------------------------------------------------------------
TOPICS = {"newsletter": "Our monthly newsletter", "offers": "Offers & discounts"}  # conftest's


def _topic_ledger(root, customer_id):
    with Workspace.open(root) as ws:
        t = ws.table("consent")
        rows = t.filter(t.customer_id == customer_id, t.purpose != "marketing").to_pyarrow().to_pylist()
    return sorted((r["purpose"], r["channel"], r["status"], r["source"]) for r in rows)


def test_the_preference_centre_lists_topics_and_records_a_choice_per_channel(topical):
    token, cid, c = topical.token(), topical.customer_id, topical.client
    page = c.get(f"/preferences/{token}")
    assert page.status_code == 200
    for name in TOPICS:  # each topic a checkbox, ticked until the person leaves it
        assert re.search(rf'id="topic-{name}" name="topic" value="{name}"\s+checked', page.text), name
    assert "Offers &amp; discounts" in page.text  # labels are escaped

    def save(*topics):
        return c.post(f"/preferences/{token}", data={"action": "save", "channel": ["email"], "topic": topics})

    kept = save("newsletter")
    assert kept.status_code == 200, kept.text
    channels = ("email", "sms", "push", "post", "ads", "phone")
    left = [("offers", ch, "opt_out", "preference centre") for ch in sorted(channels)]
    assert _topic_ledger(topical.root, cid) == left
    page = c.get(f"/preferences/{token}").text
    assert re.search(r'id="topic-newsletter" name="topic" value="newsletter"\s+checked', page)
    assert re.search(r'id="topic-offers" name="topic" value="offers"\s+>', page)

    # saving the page unchanged appends nothing more for topics; ticking offers again opts back in
    save("newsletter")
    assert len(_topic_ledger(topical.root, cid)) == len(channels)
    save("newsletter", "offers")
    offers = sorted(s for p, _, s, _ in _topic_ledger(topical.root, cid) if p == "offers")
    assert offers == ["opt_in"] * 6 + ["opt_out"] * 6

    # the segment of one shows the choices in force; the channel consent is the marketing one
    r = c.get(f"/api/v1/customers/{cid}", headers=topical.keys.header("viewer"))
    body = r.json()
    assert body["topics"] == {"offers": dict.fromkeys(channels, "opt_in")}
    assert body["consent"]["email"] == "opt_in" and body["consent"]["sms"] == "opt_out"
    assert {e["purpose"] for e in body["consent_history"]} == {"marketing", "offers"}


def test_an_unknown_topic_is_refused_and_a_forged_token_still_learns_nothing(topical):
    token = topical.token()
    before = _topic_ledger(topical.root, topical.customer_id)
    r = topical.client.post(f"/preferences/{token}", data={"action": "save", "topic": ["weekly"]})
    assert r.status_code == 422 and "weekly" in r.json()["detail"]
    assert _topic_ledger(topical.root, topical.customer_id) == before
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = topical.client.post(f"/preferences/{forged}", data={"action": "save", "topic": ["weekly"]})
    assert r.status_code == 404 and r.json()["detail"] == "not found"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topics=st.lists(st.one_of(st.sampled_from(sorted(TOPICS)), st.text(max_size=80)), max_size=6))
def test_any_topic_field_is_saved_or_refused_never_an_error(topical, topics):
    """Whatever the form carries as ``topic``: exactly the configured topics named are kept (the
    others left), or 422 naming the field, never a 500."""
    token = topical.token()
    form = {"action": "save", "channel": ["email"], "topic": topics}
    r = topical.client.post(f"/preferences/{token}", data=form)
    assert r.status_code in (200, 422), r.text
    with Workspace.open(topical.root) as ws:
        shown = ws.preferences.preferences(token).topics
    if r.status_code == 200:
        assert shown == {t: t in topics for t in TOPICS}
    else:
        assert r.headers["content-type"] == "application/problem+json" and "topic" in r.text
