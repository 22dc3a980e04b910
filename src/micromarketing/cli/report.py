"""`micromarketing report [CAMPAIGN] --out report.html`: one self-contained HTML file with charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.workspace import Workspace


@command(view=views.report_written)
def report(
    ws: Workspace,
    campaign: Annotated[
        str | None, typer.Argument(help="A campaign to report on first (default: the analytics report only).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
):
    """Write the workspace report (segments, RFM, CLV, personas, map) and a campaign's results."""
    return ws.reports.write(out, campaign=campaign)
