"""`micromarketing deliver`, `micromarketing suppress import` and `micromarketing ledger`: send
what the outbox holds, feed the suppression list, show who got what."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.errors import InvalidInputError
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.workspace import Workspace

suppress_app = typer.Typer(
    help="The suppression list: addresses never to contact again.", no_args_is_help=True
)


@command(view=views.delivery, as_json=views.delivery_json)
def deliver(
    ws: Workspace,
    progress: ProgressCallback,
    workers: Annotated[int, typer.Option("--workers", "-n", help="Worker processes sharing the outbox.")] = 1,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most this many messages per second (all workers).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep running and send messages as they come due (stop: Ctrl-C).")
    ] = False,
    campaign: Annotated[
        str | None, typer.Option("--campaign", "-c", help="Only this campaign's messages.")
    ] = None,
):
    """Send every message due in the outbox, record each outcome, and exit (0) when none is left."""
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1 (got {workers})")
    if rate is not None and rate <= 0:
        raise InvalidInputError(f"--rate must be positive (got {rate})")
    stopping = threading.Event()
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
    report = ws.delivery.deliver(
        workers=workers,
        rate=rate,
        follow=follow,
        campaign=campaign,
        progress=progress if workers == 1 else noop_progress,
        stop=stopping.is_set,
    )
    return report, ws.delivery.status()


@suppress_app.command("import")
@command(view=views.suppressed)
def suppress_import(
    ws: Workspace,
    file: Annotated[Path, typer.Argument(help="A provider's bounce/complaint export (CSV or JSON lines).")],
):
    """Add the addresses of a provider's bounce/complaint export to the suppression list."""
    return ws.delivery.suppress_import(file)


@command(view=views.send_ledger)
def ledger(ws: Workspace, customer: Annotated[str, typer.Argument(help="Customer id.")]):
    """Every message queued for a customer, where it stands, and each attempt's outcome."""
    return ws.delivery.ledger(customer)
