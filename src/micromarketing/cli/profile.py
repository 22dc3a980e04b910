"""`micromarketing profile`: build the profiles table and show the RFM segment summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    handle_errors,
    open_workspace,
    print_json,
    progress_bar,
)


@handle_errors
def profile(
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Count only data before this date (UTC)."),
    ] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Build the profiles table (RFM, value, preferences, location) as of a date."""
    with open_workspace(workspace) as ws, progress_bar(not json_output) as progress:
        result = ws.profile(as_of=as_of.date() if as_of else None, progress=progress)
        summary = ws.rfm_summary()
    if json_output:
        print_json({**result.__dict__, "rfm_segments": summary.to_dict(orient="records")})
        return
    console.print(
        f"Profiled [bold]{result.customers:,}[/] customers ({result.with_orders:,} with orders) "
        f"as of {result.as_of}"
    )
    console.print(rfm_table(summary, result.currency))


def rfm_table(summary: pd.DataFrame, currency: str | None) -> Table:
    """The RFM summary as a Rich table (shared with `demo`)."""
    table = Table(title="RFM segments")
    for column in ("segment", "customers", "share", f"revenue ({currency or '-'})", "revenue share"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for row in summary.itertuples():
        table.add_row(
            row.rfm_segment,
            f"{row.customers:,}",
            f"{row.share:.1%}",
            f"{row.revenue:,.0f}",
            f"{row.revenue_share:.1%}",
        )
    return table
