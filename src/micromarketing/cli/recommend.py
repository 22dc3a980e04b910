"""`micromarketing recommend`: fit the product recommender, show recommendations, evaluate offline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

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

app = typer.Typer(help="Product recommendations from purchases and product views.", no_args_is_help=True)

AsOfOption = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Use data before this date (default: all)."),
]
MethodOption = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="auto (default: the best of the three on a validation split), item (item-item),"
        " als (implicit ALS) or hybrid (item-item + buy again + segment popularity).",
    ),
]


@app.command("fit")
@handle_errors
def fit(
    method: MethodOption = None,
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fit the recommender on interactions before --as-of and store it as a new version."""
    from dataclasses import asdict

    with open_workspace(workspace) as ws, progress_bar(not json_output) as report:
        result = ws.recommender.fit(method=method, as_of=as_of.date() if as_of else None, progress=report)
    if json_output:
        print_json(asdict(result))
        return
    console.print(
        f"Recommender v{result.version} ({result.method}) as of {result.as_of}: "
        f"{result.customers:,} customers × {result.products:,} products, "
        f"{result.interactions:,} interactions → {result.path}"
    )


@app.command("show")
@handle_errors
def show(
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many products.")] = 5,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the top-K recommended products for one customer."""
    from micromarketing.errors import NotFoundError
    with open_workspace(workspace) as ws:
        frame = ws.recommender.recommend([customer_id], k)
        if frame.empty:
            raise NotFoundError(f"customer {customer_id!r} not found (or nothing to recommend)")
        products = ws.table("products").to_pandas()
    frame = frame.merge(products[["product_id", "name", "category", "price"]], on="product_id", how="left")
    if json_output:
        print_json(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))
        return
    table = Table(
        "rank", "product", "name", "category", "price", "score", title=f"Recommendations for {customer_id}"
    )
    for r in frame.itertuples(index=False):
        table.add_row(
            str(r.rank), r.product_id, str(r.name), str(r.category), f"{r.price:.2f}", f"{r.score:.3f}"
        )
    console.print(table)


@app.command("evaluate")
@handle_errors
def evaluate(
    method: MethodOption = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Cut-off rank for the metrics.")] = 10,
    holdout_days: Annotated[
        int, typer.Option("--holdout-days", min=1, help="Length of the test period.")
    ] = 90,
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Time-split evaluation: precision, recall, NDCG at K and coverage, against every baseline."""
    with open_workspace(workspace) as ws, progress_bar(not json_output) as report:
        result = ws.recommender.evaluate(
            method=method,
            k=k,
            holdout_days=holdout_days,
            as_of=as_of.date() if as_of else None,
            progress=report,
        )
    if json_output:
        print_json(result.to_dict())
        return
    best = result.best_baseline()
    table = Table(
        "metric",
        f"{result.method}",
        *result.baselines,
        f"vs {best}",
        title=f"Train before {result.cutoff}, test {result.cutoff} – {result.as_of}: "
        f"{result.test_customers:,} customers",
    )
    lift = result.lift()
    for metric in ("precision", "recall", "ndcg", "coverage"):
        table.add_row(
            f"{metric}@{k}" if metric != "coverage" else metric,
            f"{getattr(result.model, metric):.4f}",
            *(f"{getattr(m, metric):.4f}" for m in result.baselines.values()),
            f"{lift[metric]:.2f}×",
        )
    if result.selection is not None:
        console.print(
            f"chosen on {result.selection.validation_start} – {result.selection.validation_end}: "
            f"{result.method} {result.params or ''}"
        )
    console.print(table)
