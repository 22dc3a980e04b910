"""The one command wrapper of cli/_common.py: where the workspace comes from, exit codes, --json."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from micromarketing.cli.main import app


def _workspace(tmp_path, name):
    root = tmp_path / name
    assert CliRunner().invoke(app, ["init", str(root), "--currency", "EUR"]).exit_code == 0
    return root


def _segments(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_workspace_comes_from_the_command_then_the_root_then_the_environment(tmp_path, monkeypatch):
    a, b = _workspace(tmp_path, "a"), _workspace(tmp_path, "b")
    runner = CliRunner()
    from_env = runner.invoke(app, ["segment", "list", "--json"], env={"MICROMARKETING_WORKSPACE": str(a)})
    assert _segments(from_env) == []
    monkeypatch.chdir(tmp_path)  # not a workspace
    nowhere = runner.invoke(app, ["segment", "list"])
    assert nowhere.exit_code == 2 and "is not a workspace" in nowhere.output
    root_wins = runner.invoke(app, ["-w", str(b), "apikey", "create", "--role", "viewer", "--json"],
                              env={"MICROMARKETING_WORKSPACE": str(a)})
    assert root_wins.exit_code == 0, root_wins.output
    listed_b = json.loads(runner.invoke(app, ["apikey", "list", "-w", str(b), "--json"]).stdout)
    listed_a = json.loads(runner.invoke(app, ["apikey", "list", "-w", str(a), "--json"]).stdout)
    assert len(listed_b) == 1 and listed_a == []
    command_wins = runner.invoke(app, ["-w", str(b), "apikey", "list", "-w", str(a), "--json"])
    assert json.loads(command_wins.stdout) == []


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    root = _workspace(tmp_path, "ws")
    result = CliRunner().invoke(app, ["segment", "create", "x", "--rule", "frequency >", "-w", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ")
