"""`micromarketing segment discover`: cluster customers into micro-segments and print their personas.

Thin layer over :func:`micromarketing.segments.discover.discover_segments`; registered on the
``segment`` command group by ``cli/segment.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from micromarketing import DISCOVERY_PREFIX as DEFAULT_PREFIX
from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
    progress_bar,
)


@handle_errors
def discover(
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
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Discover micro-segments by clustering customers, and save each with a buyer persona."""
    with open_workspace(workspace) as ws, progress_bar(enabled=not json_output) as progress:
        result = ws.segments.discover(
            features=features,
            k=k,
            min_size=min_size,
            seed=seed,
            prefix=prefix,
            save=not dry_run,
            progress=progress,
        )
    if json_output:
        print_json(result.to_dict())
        return
    how = f"k={result.k} chosen by {result.criterion}" if result.k_mode == "auto" else f"k={result.k} (fixed)"
    console.print(
        f"Discovered [bold]{result.k}[/] segments among {result.customers:,} customers with orders "
        f"as of {result.as_of} ({how})."
    )
    if result.excluded_no_orders:
        console.print(
            f"{result.excluded_no_orders:,} customers without orders were not clustered "
            "(select them with the rule `frequency = 0`)."
        )
    if result.scores:
        scores = Table(title="Choosing k")
        for col in ("k", "stability (ARI)", "silhouette", "smallest cluster"):
            scores.add_column(col, justify="right")
        for s in result.scores:
            style = "bold green" if s.k == result.k else None
            scores.add_row(
                str(s.k), f"{s.stability:.3f}", f"{s.silhouette:.3f}", f"{s.smallest:,}", style=style
            )
        console.print(scores)
    table = Table(title="Personas" + (" (dry run: nothing saved)" if dry_run else ""), show_lines=True)
    table.add_column("segment")
    table.add_column("persona")
    table.add_column("size", justify="right")
    table.add_column("revenue", justify="right")
    table.add_column("avg order", justify="right")
    table.add_column("distinguishing traits")
    for seg in result.segments:
        p = seg.persona
        label = seg.name + (f" v{seg.version}" if seg.version else "")
        table.add_row(
            label,
            f"[bold]{p.name}[/]\n{p.description}",
            f"{p.size:,}\n{p.share:.0%}",
            f"{p.revenue_share:.0%}",
            "-" if p.avg_order_value is None else f"{p.avg_order_value:,.0f}",
            "\n".join(t.text for t in p.traits[:6]),
        )
    console.print(table)
    if result.retired:
        console.print(f"Retired from the previous run: {', '.join(result.retired)}")
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", markup=True, highlight=False)
