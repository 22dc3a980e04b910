"""`micromarketing demo`: the whole loop on generated data, with a summary of each step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from micromarketing.cli._common import JsonOption, console, handle_errors, print_json, progress_bar
from micromarketing.cli.profile import rfm_table
from micromarketing.demo import run_demo


@handle_errors
def demo(
    customers: Annotated[int, typer.Option("--customers", min=100, help="Customers to generate.")] = 20_000,
    out: Annotated[Path, typer.Option("--out", help="Directory for the data and the workspace.")] = Path(
        "demo-workspace"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data generator.")] = 7,
    json_output: JsonOption = False,
) -> None:
    """Generate data, ingest it, profile every customer and report (the main job)."""
    with progress_bar(not json_output) as progress:
        report = run_demo(out, customers=customers, seed=seed, progress=progress)
    if json_output:
        print_json(
            {
                "workspace": report.workspace,
                "ingested": [r.__dict__ for r in report.ingested],
                "profile": report.profile.__dict__ if report.profile else None,
                "rfm_segments": report.rfm.to_dict(orient="records") if report.rfm is not None else [],
                "timings_s": report.timings,
            }
        )
        return
    ingest_table = Table(title="Ingest")
    for column in ("file", "accepted", "rejected"):
        ingest_table.add_column(column, justify="left" if column == "file" else "right")
    for result in report.ingested:
        ingest_table.add_row(result.path.name, f"{result.accepted:,}", f"{result.rejected:,}")
    console.print(ingest_table)
    if report.rfm is not None and report.profile is not None:
        console.print(rfm_table(report.rfm, report.profile.currency))
    timings = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in report.timings.items())
    console.print(f"Workspace: [bold]{report.workspace}[/]  ({timings})")
