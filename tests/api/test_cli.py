"""`micromarketing apikey create|list|revoke`: the key alone on the last line, JSON, errors in one line."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from micromarketing.api import create_app
from micromarketing.cli.main import app

runner = CliRunner()


def run(root, *args):
    return runner.invoke(app, ["apikey", *args, "--workspace", str(root)])


def test_create_list_revoke(workspace):
    root = workspace.root
    workspace.close()
    created = run(root, "create", "--role", "marketer", "--name", "ci")
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("mmk_") and " " not in key
    as_json = run(root, "create", "--role", "viewer", "--json")
    payload = json.loads(as_json.output)
    assert set(payload) == {"key", "id", "role"} and payload["role"] == "viewer" and payload["id"] == 2

    with TestClient(create_app(root, rate_limit=0)) as client:
        ok = client.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        listed = json.loads(run(root, "list", "--json").output)
        assert [(k["id"], k["role"], k["name"]) for k in listed] == [(1, "marketer", "ci"), (2, "viewer", "")]
        assert key not in run(root, "list").output and key not in json.dumps(listed)
        revoked = run(root, "revoke", "1", "--json")
        assert revoked.exit_code == 0 and json.loads(revoked.output)["revoked_at"]
        assert client.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_errors_are_one_line_exit_2(workspace):
    root = workspace.root
    workspace.close()
    bad_role = run(root, "create", "--role", "owner")
    assert bad_role.exit_code == 2 and "unknown role 'owner'" in bad_role.output
    missing = run(root, "revoke", "42")
    assert missing.exit_code == 2 and "no API key with id 42" in missing.output
    assert "Traceback" not in bad_role.output + missing.output
