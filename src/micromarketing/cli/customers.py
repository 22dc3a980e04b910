"""`micromarketing customers show ID`: the segment-of-one view."""

from __future__ import annotations

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
)

app = typer.Typer(help="Look at individual customers.", no_args_is_help=True)


@app.command("show")
@handle_errors
def show(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    orders: Annotated[int, typer.Option("--orders", help="How many recent orders to list.")] = 10,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Profile, attributes, recent orders and consent of one customer."""
    with open_workspace(workspace) as ws:
        view = ws.customer(customer_id.strip(), orders=orders)  # ingest trims ids too
    if json_output:
        print_json(view.__dict__)
        return
    console.print(_pairs("Customer " + view.customer_id, view.attributes))
    if view.profile:
        console.print(_pairs("Profile", view.profile))
    orders_table = Table(title="Recent orders")
    for column in ("order", "date", "lines", "amount", "channel"):
        orders_table.add_column(column)
    for order in view.recent_orders:
        orders_table.add_row(
            str(order["order_id"]),
            str(order["ordered_at"])[:19],
            str(order["lines"]),
            f"{order['amount']:,.2f} {order['currency'] or ''}",
            str(order["channel"] or ""),
        )
    console.print(orders_table)
    consent = ", ".join(f"{channel}: {status}" for channel, status in sorted(view.consent.items()))
    console.print(f"Consent: {consent or 'none recorded'}")


def _pairs(title: str, values: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in values.items():
        if value is not None:
            table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    return table
