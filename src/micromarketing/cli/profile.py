"""`micromarketing profile`: build the profiles table and show the RFM segment summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace


@command(view=views.profile, as_json=views.profile_json)
def profile(
    ws: Workspace,
    progress: ProgressCallback,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Count only data before this date (UTC)."),
    ] = None,
):
    """Build the profiles table (RFM, value, preferences, location) as of a date."""
    return ws.profile(as_of=as_of.date() if as_of else None, progress=progress), ws.rfm_summary()
