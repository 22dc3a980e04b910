"""Privacy through the REST API (admin keys only): export, erasure and the audit log by page."""

from __future__ import annotations

import duckdb

from micromarketing import Workspace

PROBLEM = "application/problem+json"


def test_export_then_forget_then_nothing_is_held(served):
    h, cid = served.keys.header("admin"), served.customer_id
    with Workspace.open(served.root) as ws:
        email = ws.segment_of_one(cid).attributes["email"]
    exported = served.client.post("/api/v1/privacy/export", json={"customer_id": cid}, headers=h)
    assert exported.status_code == 200, exported.text
    data = exported.json()
    assert data["customer_id"] == cid
    assert data["warehouse"]["customers"][0]["email"] == email and data["warehouse"]["transactions"]

    erased = served.client.post("/api/v1/privacy/forget", json={"customer_id": cid}, headers=h)
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["warehouse_rows"]["customers"] == 1 and report["suppressions_added"] >= 1
    assert not report["already_erased"] and report["subject"].startswith("erased:")
    gone = served.client.get(f"/api/v1/customers/{cid}", headers=h)
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
    served.client.app.state.holder.stop()  # let go of the warehouse to search it from here
    con = duckdb.connect(str(served.root / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM customers WHERE email = ?", [email]).fetchone() == (0,)
    finally:
        con.close()

    again = served.client.post("/api/v1/privacy/forget", json={"customer_id": cid}, headers=h)
    assert again.status_code == 200 and again.json()["already_erased"]
    nobody = served.client.post("/api/v1/privacy/forget", json={"customer_id": "nobody"}, headers=h)
    assert nobody.status_code == 404 and "nothing is held" in nobody.json()["detail"]


def test_audit_log_by_page_newest_first_without_contact_points(served):
    h = served.keys.header("admin")
    for _ in range(3):
        assert served.client.post("/api/v1/privacy/export", json={"customer_id": served.customer_id},
                                  headers=h).status_code == 200
    with Workspace.open(served.root) as ws:
        everything = ws.privacy.audit_log(limit=10_000)
    ids, offset = [], 0
    while offset is not None:
        page = served.client.get(f"/api/v1/privacy/audit?limit=4&offset={offset}", headers=h).json()
        assert page["total"] == len(everything) and len(page["items"]) <= 4
        ids += [e["id"] for e in page["items"]]
        offset = page["next_offset"]
    assert ids == sorted((e.id for e in everything), reverse=True)

    exports = served.client.get("/api/v1/privacy/audit?action=privacy.", headers=h).json()
    assert exports["total"] == 3 and {e["action"] for e in exports["items"]} == {"privacy.export"}
    assert all(e["actor"] == "api:key 3" for e in exports["items"])
    since = exports["items"][0]["at"]
    newer = served.client.get("/api/v1/privacy/audit", params={"since": since}, headers=h).json()
    assert 1 <= newer["total"] < len(everything)
    with Workspace.open(served.root) as ws:
        email = ws.segment_of_one(served.customer_id).attributes["email"]
    assert email not in served.client.get("/api/v1/privacy/audit?limit=1000", headers=h).text
