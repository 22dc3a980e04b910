"""The `micromarketing` command: a thin Typer layer over the Workspace.

Each part of the loop registers its commands from its own module in this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import (
    apikey,
    clv,
    customers,
    datasets,
    demo,
    ingest,
    offer,
    profile,
    recommend,
    report,
    segment,
    segment_discover,
    serve,
    template,
)
from micromarketing.cli._common import JsonOption, console, handle_errors, print_json
from micromarketing.errors import ConflictError
from micromarketing.workspace import Workspace

app = typer.Typer(
    name="micromarketing",
    help="Find small, well-defined customer groups, reach each, and prove what it earned.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the workspace in.")],
    currency: Annotated[
        str | None,
        typer.Option("--currency", help="The workspace currency (default: that of the first transactions)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a workspace: micromarketing.toml, warehouse.duckdb and ops.sqlite."""
    if directory.exists() and not directory.is_dir():
        raise ConflictError(f"{directory}: exists and is not a directory")
    try:
        ws = Workspace.init(directory, currency=currency)
    except (FileExistsError, NotADirectoryError) as exc:  # a parent path is a file
        raise ConflictError(f"{directory}: cannot create the workspace: {exc.strerror}") from None
    ws.close()
    if json_output:
        print_json({"workspace": str(ws.root), "warehouse": str(ws.warehouse.path), "ops": ws.ops.url,
                    "currency": ws.settings.ingest.currency})
    else:
        console.print(f"Created workspace [bold]{ws.root}[/]")


app.add_typer(datasets.app, name="datasets")
app.add_typer(customers.app, name="customers")
app.add_typer(clv.app, name="clv")
segment.app.command("discover")(segment_discover.discover)
app.add_typer(segment.app, name="segment")
app.add_typer(template.app, name="template")
app.add_typer(recommend.app, name="recommend")
app.add_typer(offer.app, name="offer")
app.command("ingest")(ingest.ingest)
app.command("profile")(profile.profile)
app.command("demo")(demo.demo)
app.command("report")(report.report)
app.add_typer(apikey.app, name="apikey")
app.command("serve")(serve.serve)
