"""Campaigns and their measurement through the REST API: plan, run, status, list, results with
lifts and intervals, allocation and the HTML report, over a real workspace."""

from __future__ import annotations

import csv
import socket
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from micromarketing import Workspace

PROBLEM = "application/problem+json"
SPEC = """\
name: {name}
objective: conversion
attribution_days: 7
control_share: 0.5
budget: 1000
segments:
  - segment: loyal
    variants:
      - {{name: a, template: seasonal_picks, channel: email, share: 1.0}}
"""


def buys(i: int, arm: str) -> bool:
    """Whether the ``i``-th member buys after the campaign: 7 in 10 treated, 1 in 10 controls."""
    return i % 10 < 7 if arm == "a" else i % 10 == 0


def spec(name: str = "spring") -> dict[str, str]:
    return {"spec": SPEC.format(name=name)}


class Sink:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received += len(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture(scope="module")
def launched(shop):
    """``spring`` run through the API and delivered to the sink, then orders after it: most
    treated members buy, few controls."""
    r = shop.client.post("/api/v1/campaigns", json=spec(), headers=shop.keys.header("marketer"))
    assert r.status_code == 201, r.text
    sink = Sink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with Workspace.open(shop.root) as ws:
            ws.context.settings.channels.email.port = port
            delivered = ws.delivery.deliver(campaign="spring")
            arms = ws.campaigns.assignments("spring")[["customer_id", "arm"]].to_dict("records")
    finally:
        controller.stop()
    assert delivered.sent == sink.received == r.json()["pending"] > 0
    after = datetime.now(UTC) + timedelta(milliseconds=10)
    buyers = [a["customer_id"] for i, a in enumerate(arms) if buys(i, a["arm"])]
    path = shop.root.parent / "after.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["order_id", "customer_id", "ordered_at", "amount", "currency"])
        for i, cid in enumerate(buyers):
            out.writerow([f"AFTER{i}", cid, after.isoformat(), "40.00", "EUR"])
    with Workspace.open(shop.root) as ws:
        assert ws.ingest("transactions", path).accepted == len(buyers)
    return r.json(), arms


def test_plan_writes_nothing_and_matches_the_facade(served):
    r = served.client.post("/api/v1/campaigns/plan", json=spec(), headers=served.keys.header("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    with Workspace.open(served.root) as ws:
        expected = ws.campaigns.plan(ws.campaigns.parse(SPEC.format(name="spring")))
        assert ws.campaigns.list() == []
    assert body["members"] == expected.members > 0
    assert body["control"] == expected.control and body["reach"] == expected.reach
    assert [s["segment"] for s in body["segments"]] == ["loyal"]


@pytest.mark.parametrize(
    ("text", "status", "words"),
    [
        ("name: x\nsegments: [", 422, "request body line"),
        ("name: x\nobjective: conversion\nsegments:\n  - segment: nowhere\n    variants:\n"
         "      - {name: a, template: seasonal_picks, channel: email, share: 1.0}\n",
         422, "segments[0].segment: unknown segment 'nowhere'"),
        ("- just\n- a list\n", 422, "expected a mapping"),
    ],
)
def test_a_bad_campaign_is_a_problem_naming_where(shared, text, status, words):
    h = shared.keys.header("viewer")
    r = shared.client.post("/api/v1/campaigns/plan", json={"spec": text}, headers=h)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and words in r.json()["detail"]


def test_run_then_again_then_status_and_list(launched, shop):
    first, arms = launched
    assert first["name"] == "spring" and not first["already_run"]
    assert first["members"] == len(arms) and first["control"] == sum(a["arm"] == "control" for a in arms)
    h = shop.keys.header("marketer")
    again = shop.client.post("/api/v1/campaigns", json=spec(), headers=h)
    assert again.status_code == 200 and again.json()["already_run"]
    assert again.json()["assignments_inserted"] == 0
    changed = shop.client.post("/api/v1/campaigns", json={"spec": spec()["spec"].replace("1000", "900")},
                                 headers=h)
    assert changed.status_code == 409 and changed.headers["content-type"] == PROBLEM

    status = shop.client.get("/api/v1/campaigns/spring", headers=shop.keys.header("viewer")).json()
    assert status["members"] == first["members"] and status["control"] == first["control"]
    assert status["sent"] == first["pending"] and status["pending"] == 0  # delivered by the fixture
    assert status["sent"] + status["skipped"] == first["members"] - first["control"] - first["global_holdout"]
    listed = shop.client.get("/api/v1/campaigns?limit=1", headers=shop.keys.header("viewer")).json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "spring" and listed["next_offset"] is None
    assert shop.client.get("/api/v1/campaigns/nope", headers=h).status_code == 404

    audit = shop.client.get("/api/v1/privacy/audit?action=campaign.run",
                              headers=shop.keys.header("admin")).json()
    assert audit["items"][0]["actor"] == "api:key 2" and audit["items"][0]["subject"] == "spring"


def test_results_show_the_lift_per_segment_with_intervals(launched, shop):
    _, arms = launched
    r = shop.client.get("/api/v1/campaigns/spring/results", headers=shop.keys.header("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    counts = {(a["segment"], a["arm"]): a for a in body["arms"]}
    treated = sum(a["arm"] == "a" for a in arms)
    assert counts[("loyal", "a")]["assigned"] == treated
    assert counts[("loyal", "a")]["conversions"] == sum(
        1 for i, a in enumerate(arms) if a["arm"] == "a" and buys(i, "a")
    )
    loyal = next(c for c in body["comparisons"] if c["segment"] == "loyal")
    lift = loyal["conversion"]
    assert lift["absolute"] == pytest.approx(lift["treatment"] - lift["control"])
    low, high = lift["absolute_interval"]["low"], lift["absolute_interval"]["high"]
    assert 0 < low < lift["absolute"] < high  # 70% against 10%: the interval excludes no effect
    assert lift["p_value"] < 0.001
    # the same numbers the facade gives
    with Workspace.open(shop.root) as ws:
        again = ws.measure.campaign("spring").model_dump(mode="json")
    assert [a["conversions"] for a in again["arms"]] == [a["conversions"] for a in body["arms"]]
    assert again["comparisons"][0]["conversion"]["absolute_interval"] == lift["absolute_interval"]


def test_allocation_spends_the_budget(launched, shop):
    r = shop.client.get("/api/v1/campaigns/spring/allocation?budget=500&seed=3",
                          headers=shop.keys.header("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["budget"] == 500 and body["seed"] == 3
    assert sum(a["budget"] for a in body["arms"]) == pytest.approx(500)
    bad = shop.client.get("/api/v1/campaigns/spring/allocation?budget=0", headers=shop.keys.header("viewer"))
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


def test_report_is_html_with_the_campaign(launched, shop):
    r = shop.client.get("/api/v1/report?campaign=spring", headers=shop.keys.header("viewer"))
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.lstrip().lower().startswith("<!doctype html") and "spring" in r.text
    missing = shop.client.get("/api/v1/report?campaign=nope", headers=shop.keys.header("viewer"))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
