"""The reports in a real browser: headless Chromium opens the files offline and every chart draws.

Chromium comes from Debian (`scripts/system-deps.sh` installs it); Playwright drives it by path
because `playwright install` cannot download browsers here.  The test is skipped only when no
`chromium` is on PATH.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from datetime import date
from pathlib import Path

import pytest

from micromarketing.measure.clv_report import clv_validation_report
from micromarketing.measure.report import ArmResult, write_report
from micromarketing.profiles.clv_validate import cdnow_path, read_transactions_file, validate

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/system-deps.sh installs it with apt-get)"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# For each chart: its id, how many traces Plotly drew, and how many trace groups are in its SVG.
DRAWN = """() => [...document.querySelectorAll('.plotly-graph-div')].map(d => ({
    id: d.id,
    svg: d.querySelectorAll('svg.main-svg').length,
    traces: (d._fullData || []).filter(t => t.visible !== false).length,
    drawn: d.querySelectorAll('g.trace, g.table').length
        + d.querySelectorAll('g.hm image').length + d.querySelectorAll('g.funnellayer g.point').length,
    title: (d.querySelector('.gtitle') || {}).textContent || ''
}))"""


def _load_sibling(name: str):
    """The hand-made inputs of test_report.py (tests are not a package under importlib mode)."""
    module = f"mm_measure_{name}"
    if module not in sys.modules:
        spec = importlib.util.spec_from_file_location(module, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[module] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module])
    return sys.modules[module]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _open(browser, path: Path, screenshot: Path) -> tuple[list[dict], list[str], list[str]]:
    """Open ``path``: the charts' drawing state, console errors, requests that failed or left the file."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    failed: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on(
        "request", lambda r: outside.append(r.url) if not r.url.startswith(("file://", "data:")) else None
    )
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout)", timeout=20_000
    )
    charts = page.evaluate(DRAWN)
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    print(f"screenshot: {screenshot}")
    return charts, errors, failed + outside


def test_workspace_report_draws_every_chart_offline(browser, tmp_path):
    sibling = _load_sibling("test_report")
    campaign = sibling.campaign_results()
    # A hostile segment name must stay text: an <img> that loaded would be a request.
    campaign.arms.append(
        ArmResult(
            segment='<img src="http://example.invalid/x.png">',
            variant="A",
            assigned=50,
            delivered=40,
            conversions=3,
            lift=0.1,
            ci_low=-0.1,
            ci_high=0.3,
            roi=0.2,
            budget_now=10,
            budget_next=12,
        )
    )
    written = write_report(tmp_path / "report.html", sibling.report_inputs(), campaign)
    charts, errors, requests = _open(browser, Path(written.path), tmp_path / "report.png")
    assert not errors, errors
    assert not requests, requests
    assert len(charts) == written.charts == 10
    for chart in charts:
        assert chart["svg"] >= 1 and chart["traces"] >= 1 and chart["drawn"] >= 1, chart
        assert chart["title"], f"{chart['id']} has no title"
    titles = [c["title"] for c in charts]
    assert "Lift per segment with 95 % intervals: raw and shrunk" in titles
    assert "Personas of the discovered segments" in titles
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_clv_validation_report_draws_in_the_browser(browser, tmp_path):
    result = validate(read_transactions_file(cdnow_path()), date(1997, 9, 30), date(1998, 6, 30))
    path = clv_validation_report(result).write(tmp_path / "clv.html")
    charts, errors, requests = _open(browser, path, tmp_path / "clv.png")
    assert not errors and not requests, (errors, requests)
    assert [c["traces"] for c in charts] == [3, 3]  # actual, BG/NBD, Pareto/NBD in both charts
    assert all(c["drawn"] == 3 for c in charts), charts
