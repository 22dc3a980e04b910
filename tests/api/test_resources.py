"""The REST resources over a real workspace: what each route returns, pages and problem details."""

from __future__ import annotations

from micromarketing import Workspace

PROBLEM = "application/problem+json"


def test_customer_is_a_segment_of_one(shared):
    r = shared.client.get(f"/api/v1/customers/{shared.customer_id}", headers=shared.keys.header("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == shared.customer_id
    assert body["profile"]["frequency"] >= 2  # the segment's rule
    assert "loyal" in body["segments"]
    assert body["recent_orders"] and body["recent_orders"][0]["amount"] > 0
    with Workspace.open(shared.root) as ws:
        expected = ws.customer(shared.customer_id)
    assert body["consent"] == expected.consent
    assert {e["channel"] for e in body["consent_history"]} >= set(expected.consent)


def test_unknown_customer_is_a_404_problem(shared):
    r = shared.client.get("/api/v1/customers/nobody", headers=shared.keys.header("viewer"))
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 404 and "nobody" in body["detail"]
    assert body["instance"] == "/api/v1/customers/nobody"
    assert set(body) >= {"type", "title", "status", "detail", "instance"}


def test_recommendations_and_next_best_offer(shared):
    h = shared.keys.header("viewer")
    recs = shared.client.get(f"/api/v1/customers/{shared.customer_id}/recommendations?k=3", headers=h)
    assert recs.status_code == 200, recs.text
    items = recs.json()["items"]
    assert [i["rank"] for i in items] == list(range(1, len(items) + 1)) and 0 < len(items) <= 3
    nbo = shared.client.get(f"/api/v1/customers/{shared.customer_id}/next-best-offer", headers=h)
    assert nbo.status_code == 200, nbo.text
    assert nbo.json()["customer_id"] == shared.customer_id


def test_segment_crud_and_members_by_page(served):
    m, v = served.keys.header("marketer"), served.keys.header("viewer")
    c = served.client
    created = c.post("/api/v1/segments", json={"name": "big", "rule": "monetary > 0"}, headers=m)
    assert created.status_code == 201, created.text
    size = created.json()["size"]
    assert size > 0 and created.json()["version"] == 1
    again = c.post("/api/v1/segments", json={"name": "big", "rule": "monetary > 0"}, headers=m)
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM

    listed = c.get("/api/v1/segments?limit=1", headers=v).json()
    assert listed["total"] == 2 and len(listed["items"]) == 1 and listed["next_offset"] == 1

    ids, offset = [], 0
    while offset is not None:
        pg = c.get(f"/api/v1/segments/big/members?limit=97&offset={offset}", headers=v).json()
        assert pg["total"] == size
        ids += pg["items"]
        offset = pg["next_offset"]
    assert len(ids) == size == len(set(ids)) and ids == sorted(ids)

    updated = c.put("/api/v1/segments/big", json={"rule": "monetary > 100"}, headers=m)
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert updated.json()["size"] < size
    assert c.get("/api/v1/segments/big", headers=v).json()["rule"] == "monetary > 100"

    assert c.delete("/api/v1/segments/big", headers=m).status_code == 204
    assert c.get("/api/v1/segments/big", headers=v).status_code == 404
    with Workspace.open(served.root) as ws:
        assert [s.name for s in ws.segments.list()] == ["loyal"]


def test_segment_used_by_another_cannot_be_deleted(served):
    m = served.keys.header("marketer")
    inner = {"name": "inner", "rule": "in_segment('loyal')"}
    r = served.client.post("/api/v1/segments", json=inner, headers=m)
    assert r.status_code == 201, r.text
    refused = served.client.delete("/api/v1/segments/loyal", headers=m)
    assert refused.status_code == 409 and "inner" in refused.json()["detail"]


def test_preview_counts_live_and_rule_errors_name_the_position(shared):
    v = shared.keys.header("viewer")
    rule = {"rule": "frequency >= 2", "sample": 3}
    r = shared.client.post("/api/v1/segments/preview", json=rule, headers=v)
    assert r.status_code == 200, r.text
    with Workspace.open(shared.root) as ws:
        assert r.json()["size"] == ws.segments.size("loyal")
    assert len(r.json()["sample"]) == 3
    bad = shared.client.post("/api/v1/segments/preview", json={"rule": "frequency >= "}, headers=v)
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["line"] == 1 and bad.json()["column"] >= 1
    assert bad.json()["type"] == "urn:micromarketing:problem:rule"


def test_templates_list_and_preview(shared):
    v = shared.keys.header("viewer")
    listed = shared.client.get("/api/v1/templates", headers=v).json()
    names = {t["name"] for t in listed["items"]}
    assert "seasonal_picks" in names and listed["total"] == len(listed["items"])
    r = shared.client.get(
        f"/api/v1/templates/seasonal_picks/preview?customer_id={shared.customer_id}", headers=v
    )
    assert r.status_code == 200, r.text
    assert r.json()["customer_id"] == shared.customer_id and r.json()["html"]


def test_template_put_refuses_a_broken_part(served):
    m = served.keys.header("marketer")
    ok = served.client.put("/api/v1/templates/hello", json={"subject": "Hi {{ first_name }}"}, headers=m)
    assert ok.status_code == 200 and ok.json()["version"] == 1
    bad = served.client.put("/api/v1/templates/hello", json={"subject": "Hi {{ first_name "}, headers=m)
    assert bad.status_code == 422 and "hello" in bad.json()["detail"]


def test_clv_before_and_after_a_fit(served):
    v = served.keys.header("viewer")
    assert served.client.get("/api/v1/clv", headers=v).status_code == 404
    with Workspace.open(served.root) as ws:
        fit = ws.clv.fit()
    r = served.client.get("/api/v1/clv", headers=v)
    assert r.status_code == 200 and r.json()["params"] == fit.params


def test_rfm_summary_and_health(shared):
    rfm = shared.client.get("/api/v1/profiles/rfm", headers=shared.keys.header("viewer")).json()
    assert sum(row["customers"] for row in rfm["items"]) == 400
    assert shared.client.get("/api/v1/health").json()["status"] == "ok"


def test_keys_are_created_shown_once_and_revoked(served):
    a = served.keys.header("admin")
    created = served.client.post("/api/v1/keys", json={"role": "viewer", "name": "bot"}, headers=a)
    assert created.status_code == 201
    key = created.json()["key"]
    assert served.client.get("/api/v1/segments", headers={"X-API-Key": key}).status_code == 200
    listed = served.client.get("/api/v1/keys", headers=a)
    assert all("key" not in k for k in listed.json()["items"]) and key not in listed.text
    assert served.client.delete(f"/api/v1/keys/{created.json()['id']}", headers=a).json()["revoked_at"]
    assert served.client.get("/api/v1/segments", headers={"X-API-Key": key}).status_code == 401
