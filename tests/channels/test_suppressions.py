"""Provider bounce/complaint exports and the plan-time email warnings."""

from __future__ import annotations

import pytest

from micromarketing.channels.email import email_warnings
from micromarketing.channels.suppressions import parse_suppression_export
from micromarketing.config import EmailSettings
from micromarketing.errors import IngestError


def test_csv_export(tmp_path):
    f = tmp_path / "bounces.csv"
    f.write_text(
        "Email Address;Type;Reason\n"
        "A@Example.com;Bounce;550 5.1.1 user unknown\n"
        "b@example.com;Spam Report;\n"
        "not-an-address;Bounce;x\n"
        "c@example.com;unsubscribe;link\n",
        encoding="utf-8",
    )
    out = parse_suppression_export(f)
    assert [(e.email, e.kind) for e in out.entries] == [
        ("a@example.com", "hard_bounce"),
        ("b@example.com", "complaint"),
        ("c@example.com", "unsubscribe"),
    ]
    assert out.entries[0].reason == "550 5.1.1 user unknown" and list(out.rejected) == [4]


def test_jsonl_export_and_errors(tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_text('{"recipient": "x@example.com", "event": "complained"}\n{"recipient": "y@example.com"}\n')
    out = parse_suppression_export(f)
    assert [(e.email, e.kind, e.line) for e in out.entries] == [
        ("x@example.com", "complaint", 1),
        ("y@example.com", "hard_bounce", 2),
    ]
    g = tmp_path / "bad.csv"
    g.write_text("name,phone\nann,1\n")
    with pytest.raises(IngestError, match="no address column"):
        parse_suppression_export(g)


def test_warnings():
    assert any("DKIM" in w for w in email_warnings(EmailSettings()))
    assert email_warnings(EmailSettings(dkim_key_path="k.pem", dkim_selector="s")) == []
    remote = EmailSettings(host="smtp.example.com", username="u", dkim_key_path="k", dkim_selector="s")
    assert any("STARTTLS" in w for w in email_warnings(remote))
