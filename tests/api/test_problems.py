"""One error shape (RFC 9457 problem details) for every error: framework, limits and the core's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from fastapi.testclient import TestClient

from micromarketing.api import create_app

PROBLEM = "application/problem+json"
KEYS = {"type", "title", "status", "detail", "instance"}


def _is_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert KEYS <= set(body) and body["status"] == status
    return body


def test_unknown_route_and_wrong_method(shared):
    body = _is_problem(shared.client.get("/api/v1/nothing-here"), 404)
    assert body["type"] == "about:blank" and body["title"] == "Not Found"
    _is_problem(shared.client.patch("/api/v1/segments", headers=shared.keys.header("admin")), 405)


def test_validation_errors_name_the_field(shared):
    r = shared.client.get("/api/v1/segments?limit=100000", headers=shared.keys.header("viewer"))
    body = _is_problem(r, 422)
    assert body["errors"][0]["loc"] == ["query", "limit"] and "limit" in body["detail"]
    r = shared.client.post("/api/v1/segments", json={"name": "1bad", "rule": "x"},
                           headers=shared.keys.header("marketer"))
    assert _is_problem(r, 422)["errors"][0]["loc"] == ["body", "name"]


def test_request_bodies_over_the_limit_are_413(shared):
    with TestClient(create_app(shared.root, rate_limit=0, max_body_bytes=2048)) as client:
        m = shared.keys.header("marketer")
        big = {"rule": "frequency >= 1 " + " " * 4000}
        body = _is_problem(client.post("/api/v1/segments/preview", json=big, headers=m), 413)
        assert "2048 bytes" in body["detail"]

        def chunks():  # no Content-Length: counted while it streams in
            yield b'{"rule": "frequency >= 1'
            for _ in range(10):
                yield b" " * 500
            yield b'"}'

        streamed = client.post("/api/v1/segments/preview", content=chunks(),
                               headers={**m, "Content-Type": "application/json"})
        _is_problem(streamed, 413)
        small = client.post("/api/v1/segments/preview", json={"rule": "frequency >= 1"}, headers=m)
        assert small.status_code == 200


def test_rate_limit_per_key_is_429_with_retry_after(shared):
    app = create_app(shared.root, rate_limit=3)
    with TestClient(app) as client:
        viewer, admin = shared.keys.header("viewer"), shared.keys.header("admin")
        assert [client.get("/api/v1/segments", headers=viewer).status_code for _ in range(3)] == [200] * 3
        body = _is_problem(client.get("/api/v1/segments", headers=viewer), 429)
        assert "rate limit" in body["detail"]
        assert int(client.get("/api/v1/segments", headers=viewer).headers["retry-after"]) >= 1
        assert client.get("/api/v1/segments", headers=admin).status_code == 200  # another key's bucket


def test_busy_warehouse_is_503_with_retry_after(served, monkeypatch):
    """Another process holds the warehouse past the lock timeout: 503, and fine once it is gone."""
    monkeypatch.setenv("MICROMARKETING_WAREHOUSE__LOCK_TIMEOUT", "0.5")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from micromarketing import Workspace
            ws = Workspace.open({str(served.root)!r})
            ws.warehouse.con
            print("holding", flush=True)
            sys.stdin.readline()
            ws.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        served.client.app.state.holder.stop()  # let the other process take the warehouse
        assert holder.stdout.readline().strip() == "holding"
        with TestClient(create_app(served.root, rate_limit=0)) as client:
            r = client.get(f"/api/v1/customers/{served.customer_id}", headers=served.keys.header("viewer"))
            body = _is_problem(r, 503)
            assert r.headers["retry-after"] == "2" and "busy" in body["detail"]
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(timeout=20)
            time.sleep(0.1)
            r = client.get(f"/api/v1/customers/{served.customer_id}", headers=served.keys.header("viewer"))
            assert r.status_code == 200
    finally:
        holder.kill()
        holder.wait()
