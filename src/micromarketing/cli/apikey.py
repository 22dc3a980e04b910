"""`micromarketing apikey create|list|revoke`: the REST API's keys (stored hashed, shown once)."""

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

app = typer.Typer(help="Create, list and revoke REST API keys.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    role: Annotated[
        str, typer.Option("--role", help="viewer (read), marketer (write) or admin (keys, privacy).")
    ],
    name: Annotated[str, typer.Option("--name", help="A label to tell keys apart.")] = "",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a key; it is printed once, alone on the last line (store it now)."""
    with open_workspace(workspace) as ws:
        created = ws.api_keys.create(role, name)
    if json_output:
        print_json({"key": created.key, "id": created.id, "role": created.role})
        return
    console.print(f"Created {created.role} key {created.id} ({created.prefix}); it is shown only once:")
    typer.echo(created.key)


@app.command("list")
@handle_errors
def list_keys(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Every key with its role and state (never the key itself)."""
    with open_workspace(workspace) as ws:
        keys = ws.api_keys.list()
    if json_output:
        print_json([k.model_dump(mode="json") for k in keys])
        return
    table = Table(title="API keys")
    for column in ("id", "prefix", "role", "name", "created", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            str(k.id), k.prefix, k.role, k.name, f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (from `apikey list`).")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke a key: requests with it answer 401 from now on."""
    with open_workspace(workspace) as ws:
        info = ws.api_keys.revoke(key_id)
    if json_output:
        print_json(info.model_dump(mode="json"))
        return
    console.print(f"Revoked key {info.id} ({info.prefix}, {info.role})")
