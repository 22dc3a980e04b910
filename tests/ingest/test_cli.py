"""`micromarketing ingest` through Typer's CliRunner (the registered app)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.workspace import Workspace

runner = CliRunner()


def _workspace(tmp_path: Path) -> Path:
    Workspace.init(tmp_path / "ws").close()
    return tmp_path / "ws"


def test_ingest_json_and_table(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    good = tmp_path / "customers.csv"
    good.write_text("customer_id,email,shoe_size\nA,a@b.co,42\nB,nope,41\n")
    other = tmp_path / "more.csv"
    other.write_text("customer_id\nC\n")
    result = runner.invoke(app, ["ingest", "customers", str(good), str(other), "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [(p["accepted"], p["rejected"]) for p in payload] == [(1, 1), (1, 0)]
    assert payload[0]["reasons"] == {"email: not an email address": 1}
    assert Path(payload[0]["quarantine_path"]).is_file() and payload[1]["quarantine_path"] is None
    assert "shoe_size" in payload[0]["warnings"][0]

    result = runner.invoke(app, ["ingest", "customers", str(good), "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    assert "customers.csv" in result.stdout and "quarantine" in result.stdout
    with Workspace.open(ws) as opened:
        assert opened.table("customers").count().execute() == 2


def test_unknown_kind_exits_2(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    result = runner.invoke(app, ["ingest", "orders", str(path), "-w", str(ws)])
    assert result.exit_code == 2
    assert "unknown kind 'orders'" in result.output and "customers" in result.output
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    result = runner.invoke(app, ["ingest", "customers", str(tmp_path / "nope.csv"), "-w", str(ws)])
    assert result.exit_code == 2
    assert "no such file" in result.output and "nope.csv" in result.output


def test_missing_required_column_exits_2(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    path = tmp_path / "tx.csv"
    path.write_text("order_id,amount\nO1,1\n")
    result = runner.invoke(app, ["ingest", "transactions", str(path), "-w", str(ws)])
    assert result.exit_code == 2
    assert "tx.csv" in result.output and "missing required column" in result.output
