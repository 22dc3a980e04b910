"""`micromarketing privacy …` and `micromarketing audit` from the command line."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from micromarketing.cli.main import app
from micromarketing.cli.privacy import parse_since
from micromarketing.errors import InvalidInputError
from micromarketing.workspace import Workspace

CLI = str(Path(sys.executable).with_name("micromarketing"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = Workspace.init(tmp_path / "ws")
    customers = tmp_path / "c.csv"
    customers.write_text("customer_id,first_name,email,phone\nC1,Ann,ann@example.com,+33612345678\nC2,Bob,,\n")
    ws.ingest("customers", customers)
    ws.close()
    return tmp_path / "ws"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_forget_without_a_terminal_does_not_ask(root):
    code, out, _ = _run("privacy", "forget", "C1", "-w", str(root), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["warehouse_rows"]["customers"] == 1 and report["subject"].startswith("erased:")
    code, _, err = _run("privacy", "forget", "nobody", "-w", str(root))
    assert code == 2 and "nothing is held" in err and "Traceback" not in err


@pytest.mark.slow  # two CLI processes: ~45 s on a busy 2-core machine
def test_forget_asks_on_a_terminal_and_yes_skips_it(root):
    """A real pseudo-terminal: answering "n" erases nothing; --yes does not ask."""
    env = {**os.environ, "MICROMARKETING_WORKSPACE": str(root), "COLUMNS": "200"}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([CLI, "privacy", "forget", "C1"], stdin=secondary, stdout=secondary,
                            stderr=secondary, env=env, close_fds=True)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 120
    while b"cannot be undone" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            seen += os.read(primary, 4096)
    os.write(primary, b"n\n")
    assert proc.wait(timeout=60) == 1
    os.close(primary)
    assert b"Erase customer C1" in seen
    with Workspace.open(root) as ws:
        assert ws.table("customers").count().execute() == 2
    done = subprocess.run([CLI, "privacy", "forget", "C1", "--yes"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "Erased customer C1" in done.stdout


def test_export_writes_json_to_a_file(root, tmp_path):
    out = tmp_path / "out" / "c1.json"
    code, stdout, _ = _run("privacy", "export", "C1", "--out", str(out), "-w", str(root))
    assert code == 0 and "c1.json" in stdout.replace("\n", "")  # Rich may wrap a long path
    data = json.loads(out.read_text())
    assert data["warehouse"]["customers"][0]["email"] == "ann@example.com"


def test_retain_dry_run_and_audit_json(root):
    code, out, _ = _run("privacy", "retain", "--dry-run", "--json", "-w", str(root))
    assert code == 0 and json.loads(out)["dry_run"] is True
    _run("privacy", "export", "C1", "-w", str(root))
    _run("privacy", "forget", "C2", "-w", str(root))
    code, out, _ = _run("audit", "--json", "--since", "1h", "-w", str(root))
    entries = json.loads(out)
    assert [e["action"] for e in entries if e["action"].startswith("privacy.")] == ["privacy.export",
                                                                                    "privacy.forget"]
    assert all(e["actor"].startswith("cli") for e in entries)
    assert "ann@example.com" not in out and "+33612345678" not in out
    code, out, _ = _run("audit", "--action", "privacy.", "-w", str(root))
    assert code == 0 and "privacy.forget" in out
    code, _, err = _run("audit", "--since", "last tuesday", "-w", str(root))
    assert code == 2 and "--since" in err and len(err.strip().splitlines()) == 1


def test_parse_since():
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_since("30m", now) == datetime(2026, 12, 3, 11, 30, tzinfo=UTC)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidInputError):
        parse_since("soon")
