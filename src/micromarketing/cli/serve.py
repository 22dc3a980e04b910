"""`micromarketing serve`: the REST API and the public customer routes under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from micromarketing.cli._common import Session, command, err_console
from micromarketing.workspace import WORKSPACE_ENV

APP_FACTORY = "micromarketing.api.app:from_environment"  # by name: the CLI does not import the API


@command(json_option=False)
def serve(
    session: Session,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the workspace: the dashboard (/), the REST API (/api/v1, /openapi.json), the customer pages.

    The server holds the warehouse while it serves and lets go whenever a CLI command waits for
    it, so commands keep working while it runs (see README, "Serving the API")."""
    import uvicorn

    os.environ[WORKSPACE_ENV] = str(session.workspace.root)  # a missing workspace fails here, in one line
    session.close()  # the server opens it itself
    err_console.print(f"Serving on http://{host}:{port}: the dashboard at /, the API under /api/v1 "
                      "(OpenAPI at /openapi.json); Ctrl-C stops")
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, log_level="info", access_log=False)
