"""`micromarketing segment discover`: cluster customers into micro-segments and print their personas.

Thin layer over ``ws.segments.discover``; registered on the ``segment`` command group by
``cli/main.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from micromarketing import DISCOVERY_PREFIX as DEFAULT_PREFIX
from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace


@command(view=views.segment_discovery)
def discover(
    ws: Workspace,
    progress: ProgressCallback,
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            "-f",
            help="Features or groups to cluster on (repeat or comma-separate): behaviour, value, "
            "lifestyle, categories, or names such as recency_days, share_eco. Default: all.",
        ),
    ] = None,
    k: Annotated[
        str, typer.Option("--k", help="Number of clusters, or 'auto' (stability then silhouette, k=2..12).")
    ] = "auto",
    min_size: Annotated[
        int | None,
        typer.Option("--min-size", min=1, help="Minimum practical segment size (default: settings, 50)."),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (results are deterministic per seed).")
    ] = 0,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            help="Segment names are PREFIX_01, PREFIX_02, …; a re-run "
            "with the same prefix replaces that set.",
        ),
    ] = DEFAULT_PREFIX,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the personas without saving segments.")
    ] = False,
):
    """Discover micro-segments by clustering customers, and save each with a buyer persona."""
    return ws.segments.discover(
        features=features,
        k=k,
        min_size=min_size,
        seed=seed,
        prefix=prefix,
        save=not dry_run,
        progress=progress,
    )
