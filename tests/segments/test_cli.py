"""`micromarketing segment …` through Typer's test runner (exit codes, JSON, files)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from micromarketing.cli.segment import app

runner = CliRunner()


def run(ws, *args):
    return runner.invoke(app, [*args, "--workspace", str(ws.root)])


def test_create_list_members_sql(ws, tmp_path):
    ws.close()
    r = run(ws, "create", "runners", "--rule", "interests contains 'running'", "--description", "Runners")
    assert r.exit_code == 0, r.output
    assert "Segment runners v1: 4 members as of 2024-07-01" in r.output
    r = run(ws, "list", "--json")
    [info] = json.loads(r.stdout)
    assert (info["name"], info["size"], info["version"]) == ("runners", 4, 1)
    out = tmp_path / "m.csv"
    r = run(ws, "members", "runners", "--out", str(out))
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 5
    r = run(ws, "sql", "runners", "--dialect", "duckdb")
    assert r.exit_code == 0 and "CONTAINS" in r.stdout
    r = run(ws, "preview", "--rule", "city = 'Lyon'", "--json")
    assert json.loads(r.stdout)["size"] == 2
    r = run(ws, "overlap", "--json")
    assert json.loads(r.stdout)["shared"] == {"runners": {"runners": 4}}
    r = run(ws, "fairness", "runners", "--json")
    assert json.loads(r.stdout)["fields"][0]["flagged"] is True


def test_user_errors_exit_2_without_traceback(ws):
    ws.close()
    r = run(ws, "create", "x", "--rule", "cltv > 3")
    assert r.exit_code == 2
    assert "line 1, col 1: unknown field 'cltv'; did you mean 'clv'?" in r.output
    assert "Traceback" not in r.output
    r = run(ws, "create", "w", "--rule", "gender = 'F'")
    assert r.exit_code == 2 and "--allow-sensitive" in r.output
    r = run(ws, "create", "w", "--rule", "gender = 'F'", "--allow-sensitive", "--reason", "recall")
    assert r.exit_code == 0
    r = run(ws, "sql", "w", "--dialect", "oracle")
    assert r.exit_code == 2 and "unknown dialect" in r.output
