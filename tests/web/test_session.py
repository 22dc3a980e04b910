"""The dashboard's session, CSRF and role rules, and the rule preview on any typed text (in-process app).

The browser tests (test_dashboard.py) drive the same paths through Chromium; these check the
edges a browser does not reach: forged and stale cookies, a revoked key, a redirect target from
another site, Hypothesis-generated rule text that must come back as a count or a positioned
error, and plan-form fields that must come back as a plan or an error naming the form — never a
server error; and a launch must be of the campaign that was planned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing import Workspace
from micromarketing.api import create_app
from micromarketing.datasets import generate
from micromarketing.web import router, session

KINDS = ("customers", "products", "stores", "transactions", "events", "consent")
SEGMENT = "regulars"
TEMPLATE = "seasonal_picks"  # the shipped example template
HTMX = {"HX-Request": "true"}  # a request the page's htmx makes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("websession")
    generate(base / "data", customers=150, seed=3, fmt="parquet")
    root = base / "ws"
    with Workspace.init(root) as ws:
        for kind in KINDS:
            ws.ingest(kind, next((base / "data").glob(f"{kind}.*")))
        ws.profile()
        ws.segments.create(SEGMENT, "frequency >= 2")
        ws.templates.install_examples()
        keys = {role: ws.api_keys.create(role, role).key for role in ("viewer", "marketer", "admin")}
        keys["revoked"] = ws.api_keys.create("marketer", "to revoke").key
    with TestClient(create_app(root, pages=[router]), base_url="http://127.0.0.1") as client:
        yield client, keys, root


def _login(client: TestClient, key: str) -> str:
    """Log in with ``key``; the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    answer = client.post("/login", data={"api_key": key, "login_token": token, "next": "/segments"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/segments"
    page = client.get("/segments")
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page.text).group(1)


def test_the_session_cookie_is_signed_httponly_and_strict(served) -> None:
    client, keys, _ = served
    client.cookies.clear()
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    answer = client.post("/login", data={"api_key": keys["marketer"], "login_token": token},
                         follow_redirects=False)
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(session.SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "mmk_" not in cookie
    client.cookies.set(session.SESSION_COOKIE, cookie.split(";")[0].split("=", 1)[1][:-2] + "xx")
    assert client.get("/segments", follow_redirects=False).headers["location"].startswith("/login")


def test_no_session_redirects_pages_and_tells_htmx(served) -> None:
    client, _, _ = served
    client.cookies.clear()
    assert client.get("/customers", follow_redirects=False).headers["location"] == "/login?next=/customers"
    partial = client.get("/segments/preview?rule=frequency>1", headers={"HX-Request": "true"})
    assert partial.status_code == 401 and partial.headers["HX-Redirect"] == "/login"


def test_login_needs_its_form_token_and_a_live_key(served) -> None:
    client, keys, _ = served
    client.cookies.clear()
    assert client.post("/login", data={"api_key": keys["marketer"]}).status_code == 403
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    wrong = client.post("/login", data={"api_key": "mmk_wrong", "login_token": token}, follow_redirects=False)
    assert wrong.headers["location"].startswith("/login?failed=1")
    away = client.post("/login", data={"api_key": keys["viewer"], "login_token": token,
                                       "next": "//evil.example/"}, follow_redirects=False)
    assert away.headers["location"] == "/"


def test_posts_need_the_token_and_the_role(served) -> None:
    client, keys, _ = served
    csrf = _login(client, keys["viewer"])
    body = {"name": "by_viewer", "rule": "frequency >= 1", "csrf_token": csrf}
    assert client.post("/segments", data=body).status_code == 403
    csrf = _login(client, keys["marketer"])
    assert client.post("/segments", data={**body, "csrf_token": "stale"}).status_code == 403
    tokenless = {k: v for k, v in body.items() if k != "csrf_token"}
    assert client.post("/segments", data=tokenless).status_code == 403
    made = client.post("/segments", data={**body, "name": "by_marketer", "csrf_token": csrf},
                       follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/segments/by_marketer"
    members = client.get("/segments/by_marketer/members.csv")
    assert members.text.splitlines()[0] == "customer_id"
    assert len(members.text.splitlines()) - 1 == int(members.headers["X-Total-Count"])


def test_a_revoked_key_loses_its_session(served) -> None:
    client, keys, root = served
    _login(client, keys["revoked"])
    with client.app.state.holder.use() as ws:  # through the server's own holder, as a request would
        key_id = next(k.id for k in ws.api_keys.list() if k.name == "to revoke")
        ws.api_keys.revoke(key_id)
    session.live_keys.forget()
    assert client.get("/segments", follow_redirects=False).status_code == 303


def test_an_unknown_customer_or_segment_is_a_page_that_says_so(served) -> None:
    client, keys, _ = served
    _login(client, keys["viewer"])
    missing = client.get("/customers/NOPE")
    assert missing.status_code == 404 and "NOPE" in missing.text and "<html" in missing.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["frequency", "monetary", ">=", "<", "=", "and", "or", "not", "(", ")",
                              "3", "12.5", '"x"', "in", ",", "recency_days"]), max_size=8).map(" ".join),
))
def test_any_typed_rule_gives_a_count_or_a_positioned_error(served, rule: str) -> None:
    client, keys, _ = served
    if not client.cookies.get(session.SESSION_COOKIE):
        _login(client, keys["viewer"])
    answer = client.get("/segments/preview", params={"rule": rule})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200 and rule.strip():
        assert ('id="preview-count"' in answer.text) or re.search(r"Line \d+, column \d+", answer.text) \
            or 'role="alert"' in answer.text


CAMPAIGN_FIELDS = {
    "name": st.one_of(st.sampled_from(["spring", "spring.v2", "", "no spaces", "-x"]), st.text(max_size=20)),
    "segment": st.one_of(st.sampled_from([SEGMENT, "", "missing"]), st.text(max_size=12)),
    "channel": st.one_of(st.sampled_from(["email", "sms", "audience", "fax", ""]), st.text(max_size=8)),
    "template_a": st.sampled_from([TEMPLATE, "", "missing"]),
    "offer_a": st.sampled_from(["", "missing"]),
    "template_b": st.sampled_from([TEMPLATE, "", "missing"]),
    "control_percent": st.one_of(st.sampled_from(["10", "0", "99.9", "100", "-5", "12.5%", "ten"]),
                                 st.text(max_size=6)),
    "attribution_days": st.one_of(st.sampled_from(["7", "0", "365", "366", "x"]), st.text(max_size=4)),
    "budget": st.one_of(st.sampled_from(["", "0", "0.01", "100000", "-1", "lots"]), st.text(max_size=6)),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.fixed_dictionaries({}, optional=CAMPAIGN_FIELDS))
def test_any_plan_form_gives_a_plan_or_an_error_naming_the_form(served, fields: dict[str, str]) -> None:
    client, keys, _ = served
    csrf = _login(client, keys["marketer"])
    answer = client.post("/campaigns/plan", data={**fields, "csrf_token": csrf}, headers=HTMX)
    assert answer.status_code == 200, answer.text
    assert 'id="plan-reach"' in answer.text or (
        'role="alert"' in answer.text and "the campaign form" in answer.text
    ), answer.text


def test_only_what_was_planned_is_launched(served) -> None:
    client, keys, _ = served
    csrf = _login(client, keys["marketer"])
    form = {"csrf_token": csrf, "name": "planned_once", "segment": SEGMENT, "template_a": TEMPLATE}
    plan = client.post("/campaigns/plan", data=form, headers=HTMX)
    planned = re.search(r'name="planned" value="([0-9a-f]{64})"', plan.text)[1]
    changed = client.post("/campaigns/run", data={**form, "control_percent": "30", "planned": planned},
                          follow_redirects=False)
    assert changed.status_code == 422 and "plan it again" in changed.text
    with client.app.state.holder.use() as ws:
        assert "planned_once" not in [c.name for c in ws.campaigns.list()]
    launched = client.post("/campaigns/run", data={**form, "planned": planned}, follow_redirects=False)
    assert launched.status_code == 303 and launched.headers["location"] == "/campaigns/planned_once"
    page = client.get("/campaigns/planned_once")
    assert page.status_code == 200 and 'data-in-flight="yes"' in page.text
    with client.app.state.holder.use() as ws:  # the audit log names the marketer's key, not "cli"
        marketer = next(k.id for k in ws.api_keys.list() if k.name == "marketer")
        runs = ws.privacy.audit_log(action="campaign.run")
    assert [(e.subject, e.actor) for e in runs] == [("planned_once", f"web:key {marketer}")]
