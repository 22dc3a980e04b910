"""`micromarketing recommend`: fit the product recommender, show recommendations, evaluate offline."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace

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
@command(view=views.recommender_fit)
def fit(ws: Workspace, progress: ProgressCallback, method: MethodOption = None, as_of: AsOfOption = None):
    """Fit the recommender on interactions before --as-of and store it as a new version."""
    return ws.recommender.fit(method=method, as_of=as_of.date() if as_of else None, progress=progress)


@app.command("show")
@command(view=views.recommendations)
def show(
    ws: Workspace,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many products.")] = 5,
):
    """Show the top-K recommended products for one customer."""
    return ws.recommender.products_for(customer_id, k)


@app.command("evaluate")
@command(view=views.recommender_evaluation, as_json=views.to_dict)
def evaluate(
    ws: Workspace,
    progress: ProgressCallback,
    method: MethodOption = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Cut-off rank for the metrics.")] = 10,
    holdout_days: Annotated[
        int, typer.Option("--holdout-days", min=1, help="Length of the test period.")
    ] = 90,
    as_of: AsOfOption = None,
):
    """Time-split evaluation: precision, recall, NDCG at K and coverage, against every baseline."""
    return ws.recommender.evaluate(
        method=method,
        k=k,
        holdout_days=holdout_days,
        as_of=as_of.date() if as_of else None,
        progress=progress,
    )
