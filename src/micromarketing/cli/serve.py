"""`micromarketing serve`: the REST API and the public customer routes under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from micromarketing.cli._common import WorkspaceOption, err_console, handle_errors


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve the workspace's REST API (/api/v1, /openapi.json) and its unsubscribe/preference pages.

    The server holds the warehouse while it serves and lets go whenever a CLI command waits for
    it, so commands keep working while it runs (see README, "Serving the API")."""
    import uvicorn

    from micromarketing.api import create_app

    app = create_app(workspace or ".")
    err_console.print(f"Serving on http://{host}:{port} (OpenAPI at /openapi.json); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
