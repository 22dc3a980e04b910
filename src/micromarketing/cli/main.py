"""The `micromarketing` command: a thin Typer layer over the Workspace.

Each part of the loop registers its commands from its own module in this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import (
    apikey,
    campaign,
    clv,
    customers,
    datasets,
    deliver,
    demo,
    ingest,
    measure,
    offer,
    privacy,
    profile,
    recommend,
    report,
    segment,
    segment_discover,
    serve,
    template,
    views,
)
from micromarketing.cli._common import command, root_callback
from micromarketing.errors import ConflictError
from micromarketing.workspace import Workspace

app = typer.Typer(
    name="micromarketing",
    help="Find small, well-defined customer groups, reach each, and prove what it earned.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    callback=root_callback,
)


@app.command()
@command(view=views.init, as_json=views.init_json)
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the workspace in.")],
    currency: Annotated[
        str | None,
        typer.Option("--currency", help="The workspace currency (default: that of the first transactions)."),
    ] = None,
):
    """Create a workspace: micromarketing.toml, warehouse.duckdb and ops.sqlite."""
    if directory.exists() and not directory.is_dir():
        raise ConflictError(f"{directory}: exists and is not a directory")
    try:
        ws = Workspace.init(directory, currency=currency)
    except (FileExistsError, NotADirectoryError) as exc:  # a parent path is a file
        raise ConflictError(f"{directory}: cannot create the workspace: {exc.strerror}") from None
    ws.close()
    return ws


app.add_typer(datasets.app, name="datasets")
app.add_typer(customers.app, name="customers")
app.add_typer(clv.app, name="clv")
segment.app.command("discover")(segment_discover.discover)
app.add_typer(segment.app, name="segment")
app.add_typer(template.app, name="template")
app.add_typer(recommend.app, name="recommend")
app.add_typer(offer.app, name="offer")
app.add_typer(campaign.app, name="campaign")
app.command("ingest")(ingest.ingest)
app.command("profile")(profile.profile)
app.command("demo")(demo.demo)
app.command("report")(report.report)
app.command("measure")(measure.measure)
app.command("allocate")(measure.allocate)
app.command("deliver")(deliver.deliver)
app.command("ledger")(deliver.ledger)
app.add_typer(deliver.suppress_app, name="suppress")
app.add_typer(privacy.app, name="privacy")
app.command("audit")(privacy.audit)
app.add_typer(apikey.app, name="apikey")
app.command("serve")(serve.serve)
