"""`micromarketing demo`: the whole loop on generated data, with a summary of each step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing import run_demo
from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.progress import ProgressCallback


@command(view=views.demo, as_json=views.demo_json)
def demo(
    progress: ProgressCallback,
    customers: Annotated[int, typer.Option("--customers", min=100, help="Customers to generate.")] = 20_000,
    out: Annotated[Path, typer.Option("--out", help="Directory for the data and the workspace.")] = Path(
        "demo-workspace"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data generator.")] = 7,
):
    """Generate data, then ingest, fit CLV, profile, segment and personalise (the main job)."""
    return run_demo(out, customers=customers, seed=seed, progress=progress)
