"""The self-contained HTML report: escaping, inline SVG, no external resources."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt

from micromarketing.measure.report import Report, format_value


def test_report_is_self_contained_and_escapes_text(tmp_path):
    rep = Report(title="Lift <test>", subtitle="A & B")
    rep.heading("Numbers").metrics({"customers": 12345, "lift": 0.1234567, "missing": float("nan")})
    rep.paragraph("<script>alert(1)</script>")
    rep.table(["segment", "value"], [["<b>x</b>", 1.5], ["y", 2]], caption="values")
    rep.line_chart([1, 2, 3], {"actual": [1, 2, 4], "model": [1, 2, 3]}, xlabel="week", vline=2)
    rep.bar_chart(["0", "1"], {"a": [1, 2], "b": [2, 3]})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    rep.figure(fig, caption="custom")
    path = rep.write(tmp_path / "sub" / "r.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Lift &lt;test&gt;" in html and "A &amp; B" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert html.count("<svg") == 3 and "<?xml" not in html
    assert "12,345" in html and "0.1235" in html and "–" in html
    # Nothing is fetched: no src/href attributes pointing anywhere, no stylesheet links.
    assert not re.search(r"""(src|href)=["']https?://""", html)
    assert "<link" not in html


def test_format_value():
    assert format_value(1234567) == "1,234,567"
    assert format_value(3.14159) == "3.1416"
    assert format_value(1e-6) == "1e-06"
    assert format_value(True) == "True"
    assert format_value("x") == "x"
