"""The server's warehouse connection runs DuckDB with ``[server] warehouse_threads`` threads (1 by
default: requests are answered one at a time), while the CLI keeps the workspace's setting."""

from __future__ import annotations

import tomllib

import tomli_w
from fastapi.testclient import TestClient

from micromarketing import Workspace
from micromarketing.api import create_app


def _threads(ws: Workspace) -> int:
    return int(ws.warehouse.raw_sql("SELECT current_setting('threads')").fetchone()[0])


def _serving_threads(root) -> int:
    app = create_app(root, rate_limit=0)
    with TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 200
        with app.state.holder.use() as ws:
            return _threads(ws)


def test_server_uses_one_duckdb_thread_and_the_cli_its_own(served):
    settings = served.root / "micromarketing.toml"
    data = tomllib.loads(settings.read_text())
    data.setdefault("warehouse", {})["threads"] = 2
    settings.write_text(tomli_w.dumps(data))
    assert _serving_threads(served.root) == 1
    with Workspace.open(served.root) as ws:
        assert _threads(ws) == 2

    data.setdefault("server", {})["warehouse_threads"] = 0  # 0: the workspace's own setting
    settings.write_text(tomli_w.dumps(data))
    assert _serving_threads(served.root) == 2
