"""`micromarketing report [CAMPAIGN] --out report.html`: one self-contained HTML file with charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    handle_errors,
    open_workspace,
    print_json,
)


@handle_errors
def report(
    campaign: Annotated[
        str | None, typer.Argument(help="A campaign to report on first (default: the analytics report only).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write the workspace report (segments, RFM, CLV, personas, map) and a campaign's results."""
    with open_workspace(workspace) as ws:
        written = ws.reports.write(out, campaign=campaign)
    if json_output:
        print_json(written.model_dump())
        return
    console.print(
        f"Report written to [bold]{written.path}[/] ({written.size_bytes / 1e6:.1f} MB, "
        f"{written.charts} charts): {', '.join(written.sections)}"
    )
