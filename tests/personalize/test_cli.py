"""The template, recommend and offer commands, run through Typer on a real workspace."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from micromarketing.cli import offer, recommend, template
from micromarketing.segments import Segments

runner = CliRunner()


def _run(app, *args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_template_commands(tiny_ws, tmp_path):
    ws = str(tiny_ws.root)
    (tmp_path / "hi.subject").write_text("Hi {{ first_name | default('you') }}")
    (tmp_path / "hi.html").write_text(
        '{% include "header.html" %}<p>{{ first_name }}</p>{% include "footer.html" %}'
    )
    (tmp_path / "hi.txt").write_text("{{ first_name }}")
    out = _run(
        template.app,
        "add",
        "hi",
        tmp_path / "hi.subject",
        tmp_path / "hi.html",
        tmp_path / "hi.txt",
        "-w",
        ws,
        "--json",
    )
    assert json.loads(out.stdout)["parts"] == ["html", "subject", "text"]
    shown = json.loads(
        _run(
            template.app,
            "preview",
            "hi",
            "--customer",
            "c2",
            "-w",
            ws,
            "--json",
            "--vars",
            '{"brand": "Maison"}',
        ).stdout
    )
    assert shown["subject"] == "Hi <script>alert(1)</script>"
    assert "&lt;script&gt;" in shown["html"] and "Maison" in shown["html"]
    failed = _run(template.app, "preview", "hi", "--customer", "c3", "-w", ws, ok=False)
    assert failed.exit_code == 2 and "first_name" in failed.output
    Segments(tiny_ws).save_discovered(
        "all4", ["c1", "c2", "c3", "c4"], as_of=tiny_ws.table("profiles").as_of.max().execute()
    )
    checked = _run(template.app, "check", "hi", "--segment", "all4", "-w", ws, "--json", ok=False)
    assert checked.exit_code == 1
    report = json.loads(checked.stdout)
    assert (report["recipients"], report["rendered"]) == (4, 3)  # c3 has no first name
    assert [f["customer_id"] for f in report["failures"]] == ["c3"] and not report["ok"]
    listed = json.loads(_run(template.app, "list", "-w", ws, "--json").stdout)
    assert [t["name"] for t in listed] == ["hi"]
    bad = tmp_path / "bad.html"
    bad.write_text("{% for %}")
    err = _run(template.app, "add", "bad", bad, "-w", ws, ok=False)
    assert err.exit_code == 2 and "syntax error" in err.output


def test_recommend_and_offer_commands(tiny_ws):
    ws = str(tiny_ws.root)
    fitted = json.loads(_run(recommend.app, "fit", "-w", ws, "--json").stdout)
    assert fitted["version"] == 1 and fitted["method"] == "item"
    shown = json.loads(_run(recommend.app, "show", "c2", "--k", "3", "-w", ws, "--json").stdout)
    assert [r["rank"] for r in shown] == [1, 2, 3] and all(r["name"] for r in shown)
    missing = _run(recommend.app, "show", "nobody", "-w", ws, ok=False)
    assert missing.exit_code == 2
    _run(offer.app, "add", "ship", "--kind", "free_shipping", "--value", "4.9", "--cost", "1", "-w", ws)
    bad = _run(
        offer.app,
        "add",
        "oops",
        "--kind",
        "discount",
        "--value",
        "10",
        "--rule",
        "frequency >=",
        "-w",
        ws,
        ok=False,
    )
    assert bad.exit_code == 2 and "line 1" in bad.output
    best = json.loads(_run(offer.app, "best", "c1", "c4", "--on", "2024-06-01", "-w", ws, "--json").stdout)
    assert [b["offer"] for b in best] == ["ship", "ship"]
    no_outcomes = _run(offer.app, "fit", "-w", ws, ok=False)
    assert no_outcomes.exit_code == 2 and "prior" in no_outcomes.output
