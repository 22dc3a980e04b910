"""`micromarketing offer`: define offers and choose the next best offer per customer."""

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
)

app = typer.Typer(
    help="Offers (discount, free shipping, bundle, loyalty points) and next best offer.", no_args_is_help=True
)

DateOpt = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])]


@app.command("add")
@handle_errors
def add(
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
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store an offer (its rule is compiled first)."""
    from dataclasses import asdict

    with open_workspace(workspace) as ws:
        info = ws.offers.add(
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
    if json_output:
        print_json(asdict(info))
        return
    console.print(
        f"Offer [bold]{info.name}[/]: {info.headline} (cost {info.cost:g}; rule: {info.rule or 'everyone'})"
    )


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Stored offers."""
    from dataclasses import asdict

    with open_workspace(workspace) as ws:
        offers = ws.offers.list()
    if json_output:
        print_json([asdict(o) for o in offers])
        return
    table = Table("name", "kind", "value", "cost", "valid", "rule")
    for o in offers:
        table.add_row(
            o.name,
            o.kind,
            f"{o.value:g}",
            f"{o.cost:g}",
            f"{o.valid_from or '…'} – {o.valid_to or '…'}",
            o.rule or "everyone",
        )
    console.print(table)


@app.command("best")
@handle_errors
def best(
    customer_ids: Annotated[list[str] | None, typer.Argument(help="Customer ids.")] = None,
    segment: Annotated[
        str | None, typer.Option("--segment", "-s", help="All members of this segment.")
    ] = None,
    on: Annotated[
        datetime | None, typer.Option("--on", formats=["%Y-%m-%d"], help="Day (default: today).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to print.")] = 20,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """The next best offer (highest expected margin) per customer."""
    with open_workspace(workspace) as ws:
        frame = ws.offers.next_best(customer_ids or [], segment=segment, on=on.date() if on else None)
    if json_output:
        print_json(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))
        return
    counts = frame["offer"].fillna("(none)").value_counts()
    console.print(", ".join(f"{k}: {v:,}" for k, v in counts.items()))
    table = Table("customer", "offer", "expected margin", "propensity", "source")
    for r in frame.head(limit).itertuples(index=False):
        table.add_row(
            r.customer_id,
            str(r.offer or "—"),
            "" if r.expected_margin != r.expected_margin else f"{r.expected_margin:.2f}",
            "" if r.propensity != r.propensity else f"{r.propensity:.3f}",
            str(r.source or ""),
        )
    console.print(table)


@app.command("fit")
@handle_errors
def fit(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Fit the conversion-propensity model on past campaign outcomes (else the prior is used)."""
    with open_workspace(workspace) as ws:
        model = ws.offers.fit_propensity()
    if json_output:
        print_json({"version": model.version, "intercept": model.intercept, "coef": model.coef.tolist()})
        return
    console.print(f"Offer propensity model v{model.version} fitted")
