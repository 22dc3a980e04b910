"""`micromarketing ingest KIND FILE...`: validate and upsert files, report accepted/rejected/quarantine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from micromarketing import INGEST_KINDS as KINDS
from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
    progress_bar,
)
from micromarketing.errors import IngestError


@handle_errors
def ingest(
    kind: Annotated[str, typer.Argument(help=f"What the files hold: {', '.join(KINDS)}.")],
    files: Annotated[
        list[Path], typer.Argument(help="CSV (.csv, .csv.gz), Parquet or JSON-lines (.jsonl, .ndjson) files.")
    ],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Validate FILES of KIND and upsert their valid rows; rejected rows go to a quarantine CSV."""
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r} (use one of: {', '.join(KINDS)})")
    for f in files:
        if f.is_dir():
            raise IngestError(f"{f}: is a directory, not a file (name the files in it)")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise IngestError(f"no such file: {', '.join(missing)}")
    results = []
    with open_workspace(workspace) as ws, progress_bar(not json_output) as progress:
        for path in files:
            results.append(ws.ingest(kind, path, progress=progress))
    if json_output:
        print_json([
            {
                "kind": r.kind, "path": str(r.path), "rows_read": r.rows_read, "accepted": r.accepted,
                "rejected": r.rejected,
                "quarantine_path": str(r.quarantine_path) if r.quarantine_path else None,
                "reasons": r.reasons, "warnings": list(r.warnings), "sha256": r.sha256,
                "currency": r.currency, "orphans": r.orphans, "orphan_examples": list(r.orphan_examples),
            }
            for r in results
        ])
        return
    table = Table(title=f"Ingested {kind}")
    for column, justify in (("file", "left"), ("rows", "right"), ("accepted", "right"),
                            ("rejected", "right"), ("quarantine", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in results:
        table.add_row(str(r.path), f"{r.rows_read:,}", f"{r.accepted:,}", f"{r.rejected:,}",
                      str(r.quarantine_path) if r.quarantine_path else "-")
    console.print(table)
    for r in results:
        for warning in r.warnings:
            err_console.print(f"[yellow]warning:[/] {r.path}: {warning}", highlight=False)
        for reason, count in list(r.reasons.items())[:10]:
            console.print(f"  {r.path.name}: {count:,} × {reason}", highlight=False, markup=False)
