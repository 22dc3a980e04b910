"""`micromarketing deliver`, `micromarketing suppress import` and `micromarketing ledger`: send
what the outbox holds, feed the suppression list, show who got what."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
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
    progress_bar,
)
from micromarketing.errors import InvalidInputError

suppress_app = typer.Typer(
    help="The suppression list: addresses never to contact again.", no_args_is_help=True
)


@handle_errors
def deliver(
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
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send every message due in the outbox, record each outcome, and exit (0) when none is left."""
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1 (got {workers})")
    if rate is not None and rate <= 0:
        raise InvalidInputError(f"--rate must be positive (got {rate})")
    stopping = threading.Event()
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
    with open_workspace(workspace) as ws, progress_bar(not json_output and workers == 1) as progress:
        report = ws.delivery.deliver(
            workers=workers,
            rate=rate,
            follow=follow,
            campaign=campaign,
            progress=progress,
            stop=stopping.is_set,
        )
        remaining = ws.delivery.status()
    if json_output:
        print_json({**report.model_dump(), "per_second": report.per_second, "outbox": remaining})
        return
    console.print(
        f"Sent [bold]{report.sent:,}[/] in {report.seconds:.1f} s ({report.per_second:,.0f}/s); "
        f"skipped {report.skipped:,}, deferred {report.deferred:,}, retrying {report.retried:,}, "
        f"failed {report.failed:,} ({report.suppressed:,} hard bounces suppressed)"
    )
    console.print("Outbox: " + ", ".join(f"{state} {n:,}" for state, n in remaining.items()))


@suppress_app.command("import")
@handle_errors
def suppress_import(
    file: Annotated[Path, typer.Argument(help="A provider's bounce/complaint export (CSV or JSON lines).")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add the addresses of a provider's bounce/complaint export to the suppression list."""
    with open_workspace(workspace) as ws:
        result = ws.delivery.suppress_import(file)
    if json_output:
        print_json(result)
        return
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.by_kind.items()))
    console.print(
        f"Suppressed [bold]{result.added:,}[/] new addresses from {file} ({kinds}); "
        f"{result.already_suppressed:,} already on the list, {result.matched_customers:,} known customers"
    )
    for line, why in sorted(result.rejected.items()):
        console.print(f"  line {line}: {why}", highlight=False)


@handle_errors
def ledger(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every message queued for a customer, where it stands, and each attempt's outcome."""
    with open_workspace(workspace) as ws:
        result = ws.delivery.ledger(customer)
    if json_output:
        print_json(result)
        return
    if not result.messages:
        console.print(f"No messages for customer {customer}")
        return
    table = Table(title=f"Send ledger of {customer}")
    for column in (
        "campaign",
        "channel",
        "variant",
        "offer",
        "message id",
        "state",
        "attempts",
        "last outcome",
    ):
        table.add_column(column)
    for m in result.messages:
        last = m.attempts[-1] if m.attempts else None
        outcome = f"{last.at:%Y-%m-%d %H:%M:%S} {last.status} {last.reason}".strip() if last else "-"
        table.add_row(
            m.campaign or "-",
            m.channel,
            m.variant or "-",
            m.offer_code or "-",
            m.message_id,
            m.state,
            str(len(m.attempts)),
            outcome,
        )
    console.print(table)
