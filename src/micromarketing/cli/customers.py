"""`micromarketing customers show ID`: the segment-of-one view."""

from __future__ import annotations

from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.workspace import Workspace

app = typer.Typer(help="Look at individual customers.", no_args_is_help=True)


@app.command("show")
@command(view=views.customer)
def show(
    ws: Workspace,
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    orders: Annotated[int, typer.Option("--orders", help="How many recent orders to list.")] = 10,
):
    """Profile, attributes, recent orders and consent of one customer."""
    return ws.customer(customer_id.strip(), orders=orders)  # ingest trims ids too
