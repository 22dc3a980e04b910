"""`micromarketing privacy forget|export|retain|consent` and `micromarketing audit`."""

from __future__ import annotations

import getpass
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)
from micromarketing.errors import InvalidInputError

app = typer.Typer(help="Consent, erasure, access requests and retention.", no_args_is_help=True)
_RELATIVE = re.compile(r"^(\d+)([dhm])$")


def _actor() -> str:
    """``cli:<login name>`` for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "cli"


@app.command("forget")
@handle_errors
def forget(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Erase one person from both stores and every file the workspace wrote (asks on a terminal)."""
    customer_id = customer_id.strip()
    if not yes and sys.stdin.isatty() and not typer.confirm(
        f"Erase customer {customer_id} everywhere? This cannot be undone", default=False, err=True
    ):
        err_console.print("nothing erased")
        raise typer.Exit(1)
    with open_workspace(workspace) as ws:
        report = ws.privacy.forget(customer_id, actor=_actor())
    if json_output:
        print_json(report)
        return
    deleted = sum(report.warehouse_rows.values()) + sum(report.ops_rows.values())
    redacted, files = sum(report.ops_redacted.values()), len(report.files_rewritten)
    console.print(f"Erased customer {customer_id} ({report.subject}): {deleted:,} rows deleted, "
                  f"{redacted:,} redacted, {files} files rewritten")
    for name, n in {**report.warehouse_rows, **report.ops_rows}.items():
        console.print(f"  {name}: {n:,}")
    for path in report.files_rewritten:
        console.print(f"  rewrote {path}")
    for path in report.files_not_inspected:
        err_console.print(f"warning: could not inspect {path} (not CSV, Parquet, JSON or text)")


@app.command("export")
@handle_errors
def export(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here (default: stdout).")
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Everything held about one person, as JSON (the access / portability request)."""
    with open_workspace(workspace) as ws:
        data = ws.privacy.export(customer_id.strip(), actor=_actor())
    if out is None:
        print_json(data)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(data.model_dump_json(indent=2) + "\n", encoding="utf-8")
    console.print(f"Wrote {data.record_count:,} records about {data.customer_id} to {out}")


@app.command("retain")
@handle_errors
def retain(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")
    ] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Purge what the retention rules (privacy table of micromarketing.toml) say is kept too long."""
    with open_workspace(workspace) as ws:
        report = ws.privacy.retain(dry_run=dry_run, actor=_actor())
    if json_output:
        print_json(report)
        return
    table = Table(title="Retention" + (" (dry run: nothing purged)" if dry_run else ""))
    for column in ("rule", "before", "would purge" if dry_run else "purged"):
        table.add_column(column)
    for rule, count in report.purged.items():
        table.add_row(rule, report.cutoffs[rule].isoformat(timespec="seconds"), f"{count:,}")
    console.print(table)


@app.command("consent")
@handle_errors
def consent(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """The consent ledger of one person, oldest first (the latest record per channel wins)."""
    with open_workspace(workspace) as ws:
        history = ws.privacy.consent_history(customer_id.strip())
    if json_output:
        print_json(history)
        return
    table = Table(title=f"Consent of {customer_id}")
    for column in ("recorded", "channel", "purpose", "status", "source"):
        table.add_column(column)
    for r in history:
        when = r.recorded_at.isoformat(timespec="seconds")
        table.add_row(when, r.channel, r.purpose, r.status, r.source or "")
    console.print(table)


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


@handle_errors
def audit(
    since: Annotated[
        str | None, typer.Option("--since", help="From this date/time, or a span back from now: 7d, 12h.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="One action, or a prefix ending in '.' (privacy.).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many (the newest).")] = 1000,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """The audit log: who did what, when, with which parameters (oldest first)."""
    start = parse_since(since) if since else None
    with open_workspace(workspace) as ws:
        entries = ws.privacy.audit_log(since=start, action=action, limit=limit)
    if json_output:
        print_json(entries)
        return
    table = Table(title="Audit log")
    for column in ("at", "actor", "action", "subject", "details"):
        table.add_column(column)
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(e.at.isoformat(timespec="seconds"), e.actor, e.action, e.subject, details)
    console.print(table)
