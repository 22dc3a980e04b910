"""`micromarketing offer`: define offers and choose the next best offer per customer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.workspace import Workspace

app = typer.Typer(
    help="Offers (discount, free shipping, bundle, loyalty points) and next best offer.", no_args_is_help=True
)

@app.command("add")
@command(view=views.offer_added)
def add(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Offer name.")],
    kind: Annotated[str, typer.Option("--kind", help="discount, free_shipping, bundle or loyalty_points.")],
    value: Annotated[
        float, typer.Option("--value", help="Percent off, shipping fee, bundle saving or points.")
    ],
    cost: Annotated[float, typer.Option("--cost", help="What one redemption costs us (currency).")] = 0.0,
    rule: Annotated[str, typer.Option("--rule", "-r", help="Eligibility rule in the segment language.")] = "",
    valid_from: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First valid day.")
    ] = None,
    valid_to: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last valid day.")
    ] = None,
    headline: Annotated[
        str | None, typer.Option("--headline", help="What templates show as offer.headline.")
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Change an existing offer.")] = False,
):
    """Store an offer (its rule is compiled first)."""
    return ws.offers.add(
        name,
        kind=kind,
        value=value,
        cost=cost,
        rule=rule,
        valid_from=valid_from.date() if valid_from else None,
        valid_to=valid_to.date() if valid_to else None,
        headline=headline,
        replace=replace,
    )


@app.command("list")
@command(view=views.offer_list)
def list_(ws: Workspace):
    """Stored offers."""
    return ws.offers.list()


@app.command("best")
@command(view=views.next_best_offers)
def best(
    ws: Workspace,
    customer_ids: Annotated[list[str] | None, typer.Argument(help="Customer ids.")] = None,
    segment: Annotated[
        str | None, typer.Option("--segment", "-s", help="All members of this segment.")
    ] = None,
    on: Annotated[
        datetime | None, typer.Option("--on", formats=["%Y-%m-%d"], help="Day (default: today).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to print.")] = 20,
):
    """The next best offer (highest expected margin) per customer."""
    return ws.offers.next_best(customer_ids or [], segment=segment, on=on.date() if on else None)


@app.command("fit")
@command(view=views.propensity, as_json=views.propensity_json)
def fit(ws: Workspace):
    """Fit the conversion-propensity model on past campaign outcomes (else the prior is used)."""
    return ws.offers.fit_propensity()
