"""`micromarketing privacy forget|export|retain|consent` and `micromarketing audit`."""

from __future__ import annotations

import getpass
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import Session, command, err_console
from micromarketing.errors import InvalidInputError
from micromarketing.workspace import Workspace

app = typer.Typer(help="Consent, erasure, access requests and retention.", no_args_is_help=True)
_RELATIVE = re.compile(r"^(\d+)([dhm])$")


def _actor() -> str:
    """``cli:<login name>`` for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "cli"


@app.command("forget")
@command(view=views.erasure)
def forget(
    session: Session,
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
):
    """Erase one person from both stores and every file the workspace wrote (asks on a terminal)."""
    customer_id = customer_id.strip()
    if not yes and sys.stdin.isatty() and not typer.confirm(
        f"Erase customer {customer_id} everywhere? This cannot be undone", default=False, err=True
    ):
        err_console.print("nothing erased")
        raise typer.Exit(1)
    return session.workspace.privacy.forget(customer_id, actor=_actor())


@app.command("export")
@command(view=views.personal_data, json_option=False)
def export(
    ws: Workspace,
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here (default: stdout).")
    ] = None,
):
    """Everything held about one person, as JSON (the access / portability request)."""
    return ws.privacy.export(customer_id.strip(), actor=_actor())


@app.command("retain")
@command(view=views.retention)
def retain(
    ws: Workspace,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")
    ] = False,
):
    """Purge what the retention rules (privacy table of micromarketing.toml) say is kept too long."""
    return ws.privacy.retain(dry_run=dry_run, actor=_actor())


@app.command("consent")
@command(view=views.consent_history)
def consent(ws: Workspace, customer_id: Annotated[str, typer.Argument(help="The customer's id.")]):
    """The consent ledger of one person, oldest first (per channel, the latest record still valid wins)."""
    return ws.privacy.consent_history(customer_id.strip())


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ``2026-11-01T08:00:00+01:00`` or a span back from now (``7d``, ``12h``, ``30m``)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(
            f"--since: {text!r} is not a date, a timestamp or a span such as 7d, 12h, 30m"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@command(view=views.audit_log)
def audit(
    session: Session,
    since: Annotated[
        str | None, typer.Option("--since", help="From this date/time, or a span back from now: 7d, 12h.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="One action, or a prefix ending in '.' (privacy.).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many (the newest).")] = 1000,
):
    """The audit log: who did what, when, with which parameters (oldest first)."""
    start = parse_since(since) if since else None
    return session.workspace.privacy.audit_log(since=start, action=action, limit=limit)
