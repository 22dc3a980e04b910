"""`micromarketing apikey create|list|revoke`: the REST API's keys (stored hashed, shown once)."""

from __future__ import annotations

from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command, json_mode
from micromarketing.workspace import Workspace

app = typer.Typer(help="Create, list and revoke REST API keys.", no_args_is_help=True)


@app.command("create")
@command(view=views.apikey_created, as_json=views.apikey_created_json)
def create(
    ws: Workspace,
    role: Annotated[
        str, typer.Option("--role", help="viewer (read), marketer (write) or admin (keys, privacy).")
    ],
    name: Annotated[str, typer.Option("--name", help="A label to tell keys apart.")] = "",
):
    """Create a key; it is printed once, alone on the last line (store it now)."""
    return ws.api_keys.create(role, name)


@app.command("list")
@command(view=views.apikey_list, as_json=json_mode)
def list_keys(ws: Workspace):
    """Every key with its role and state (never the key itself)."""
    return ws.api_keys.list()


@app.command("revoke")
@command(view=views.apikey_revoked, as_json=json_mode)
def revoke(ws: Workspace, key_id: Annotated[int, typer.Argument(help="The key's id (from `apikey list`).")]):
    """Revoke a key: requests with it answer 401 from now on."""
    return ws.api_keys.revoke(key_id)
