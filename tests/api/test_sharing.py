"""A running server and CLI writes share one workspace: a real uvicorn process on loopback, requests
in a loop, and `micromarketing segment create` run meanwhile; nothing fails and the server sees the
new segments."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

CLI = [sys.executable, "-c", "from micromarketing.cli.main import app; app()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(served):
    """`micromarketing serve` on a free loopback port, stopped by its pid afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "-w", str(served.root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # the load below is two clients in a loop: far over the default 600 requests a minute
        env={**os.environ, "MICROMARKETING_SERVER__RATE_LIMIT": "0"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stderr.read().decode()}")
        time.sleep(0.1)
    served.client.app.state.holder.stop()  # only the subprocess serves this copy
    yield base, served
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.slow  # two CLI processes and a server: ~20 s on an idle machine
def test_cli_writes_while_the_server_answers(server):
    base, served = server
    headers = served.keys.header("viewer")
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while not stop.is_set():
                statuses.append(client.get(f"/api/v1/customers/{served.customer_id}").status_code)
                statuses.append(client.get("/api/v1/segments").status_code)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        while len(statuses) < 10:  # the server holds the warehouse by now
            time.sleep(0.05)
        for name, rule in (("vip", "monetary > 100"), ("new", "frequency <= 1")):
            done = subprocess.run(
                [*CLI, "segment", "create", name, "--rule", rule, "-w", str(served.root), "--json"],
                capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, done.stderr
        before = len(statuses)
        deadline = time.monotonic() + 30
        while len(statuses) < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    listed = httpx.get(f"{base}/api/v1/segments", headers=headers).json()
    assert {s["name"] for s in listed["items"]} == {"loyal", "vip", "new"}
    assert all(s["size"] for s in listed["items"])
