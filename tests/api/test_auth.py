"""Every route of the OpenAPI document, walked with no key, a revoked key and each role."""

from __future__ import annotations

import pytest

ROLES = ("viewer", "marketer", "admin")
# The role each operation needs (None: open to anyone).  A route missing here fails the walk, so
# a new route cannot ship without a decision about who may call it.
NEEDS: dict[tuple[str, str], str | None] = {
    ("get", "/api/v1/health"): None,
    ("get", "/api/v1/customers/{customer_id}"): "viewer",
    ("get", "/api/v1/customers/{customer_id}/recommendations"): "viewer",
    ("get", "/api/v1/customers/{customer_id}/next-best-offer"): "viewer",
    ("get", "/api/v1/segments"): "viewer",
    ("post", "/api/v1/segments"): "marketer",
    ("post", "/api/v1/segments/preview"): "viewer",
    ("get", "/api/v1/segments/{name}"): "viewer",
    ("put", "/api/v1/segments/{name}"): "marketer",
    ("delete", "/api/v1/segments/{name}"): "marketer",
    ("get", "/api/v1/segments/{name}/preview"): "viewer",
    ("get", "/api/v1/segments/{name}/members"): "viewer",
    ("get", "/api/v1/templates"): "viewer",
    ("get", "/api/v1/templates/{name}"): "viewer",
    ("put", "/api/v1/templates/{name}"): "marketer",
    ("get", "/api/v1/templates/{name}/preview"): "viewer",
    ("get", "/api/v1/clv"): "viewer",
    ("get", "/api/v1/profiles/rfm"): "viewer",
    ("get", "/api/v1/campaigns"): "viewer",
    ("post", "/api/v1/campaigns"): "marketer",
    ("post", "/api/v1/campaigns/plan"): "viewer",
    ("get", "/api/v1/campaigns/{name}"): "viewer",
    ("get", "/api/v1/campaigns/{name}/results"): "viewer",
    ("get", "/api/v1/campaigns/{name}/allocation"): "viewer",
    ("get", "/api/v1/report"): "viewer",
    ("post", "/api/v1/privacy/forget"): "admin",
    ("post", "/api/v1/privacy/export"): "admin",
    ("get", "/api/v1/privacy/audit"): "admin",
    ("get", "/api/v1/keys"): "admin",
    ("post", "/api/v1/keys"): "admin",
    ("delete", "/api/v1/keys/{key_id}"): "admin",
    ("get", "/u/{token}"): None,
    ("post", "/u/{token}"): None,
    ("get", "/preferences/{token}"): None,
    ("post", "/preferences/{token}"): None,
    ("get", "/preferences/{token}/export"): None,
}
CAMPAIGN = ("name: walk\nsegments:\n  - segment: loyal\n    variants:\n"
            "      - {name: a, template: seasonal_picks, channel: email, share: 1.0}\n")
BODIES = {
    ("post", "/api/v1/segments"): {"json": {"name": "walk", "rule": "frequency >= 1"}},
    ("post", "/api/v1/segments/preview"): {"json": {"rule": "frequency >= 1"}},
    ("put", "/api/v1/segments/{name}"): {"json": {"rule": "frequency >= 3"}},
    ("put", "/api/v1/templates/{name}"): {"json": {"subject": "Hello"}},
    ("post", "/api/v1/keys"): {"json": {"role": "viewer"}},
    ("post", "/api/v1/campaigns"): {"json": {"spec": CAMPAIGN}},
    ("post", "/api/v1/campaigns/plan"): {"json": {"spec": CAMPAIGN}},
    ("post", "/api/v1/privacy/forget"): {"json": {"customer_id": "nobody"}},
    ("post", "/api/v1/privacy/export"): {"json": {"customer_id": "nobody"}},
    ("post", "/u/{token}"): {"data": {"List-Unsubscribe": "One-Click"}},
    ("post", "/preferences/{token}"): {"data": {"action": "save", "channel": ["email"]}},
}


def _url(path: str, served, token: str) -> str:
    name = "seasonal_picks" if path.startswith("/api/v1/templates") else "loyal"
    url = path.format(customer_id=served.customer_id, name=name, key_id=999, token=token)
    if url.endswith("/preview") and "templates" in url:
        url += f"?customer_id={served.customer_id}"
    if url.endswith("/allocation"):
        url += "?budget=100"
    return url


def test_every_route_refuses_missing_revoked_and_too_low_keys(served):
    doc = served.client.get("/openapi.json").json()
    operations = [(m, p) for p, ops in doc["paths"].items() for m in ops]
    assert sorted(operations) == sorted(NEEDS), "update NEEDS: the routes changed"
    token = served.token()
    checked = 0
    for method, path in operations:
        needed = NEEDS[(method, path)]
        url, body = _url(path, served, token), BODIES.get((method, path), {})
        anonymous = served.client.request(method, url, **body)
        revoked = served.client.request(method, url, headers=served.keys.header("revoked"), **body)
        if needed is None:
            assert anonymous.status_code not in (401, 403), (method, path, anonymous.text)
            assert doc["paths"][path][method].get("security") == []
            continue
        for response in (anonymous, revoked):
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
        for role in ROLES:
            response = served.client.request(method, url, headers=served.keys.header(role), **body)
            if ROLES.index(role) < ROLES.index(needed):
                assert response.status_code == 403, (method, path, role, response.status_code)
                assert response.json()["detail"] == f"this needs the {needed} role; the key is {role}"
            else:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            checked += 1
    assert checked == 3 * sum(1 for v in NEEDS.values() if v)


@pytest.mark.parametrize("header", ["Bearer mmk_nope_x", "Basic abc", "Bearer "])
def test_malformed_keys_are_401(shared, header):
    r = shared.client.get("/api/v1/segments", headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_keys_are_stored_hashed(shared):
    import sqlite3

    db = sqlite3.connect(shared.root / "ops.sqlite")
    rows = db.execute("SELECT prefix, key_hash FROM api_keys").fetchall()
    for key in (shared.keys.viewer, shared.keys.marketer, shared.keys.admin):
        assert all(key not in h and key != p for p, h in rows)
        assert any(key.split("_")[1] == p for p, _ in rows)
