"""`micromarketing ingest KIND FILE...`: validate and upsert files, report accepted/rejected/quarantine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing import INGEST_KINDS as KINDS
from micromarketing.cli import views
from micromarketing.cli._common import Session, command
from micromarketing.errors import IngestError
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace


@command(view=views.ingest)
def ingest(
    session: Session,
    progress: ProgressCallback,
    kind: Annotated[str, typer.Argument(help=f"What the files hold: {', '.join(KINDS)}.")],
    files: Annotated[
        list[Path], typer.Argument(help="CSV (.csv, .csv.gz), Parquet or JSON-lines (.jsonl, .ndjson) files.")
    ],
):
    """Validate FILES of KIND and upsert their valid rows; rejected rows go to a quarantine CSV."""
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r} (use one of: {', '.join(KINDS)})")
    for f in files:
        if f.is_dir():
            raise IngestError(f"{f}: is a directory, not a file (name the files in it)")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise IngestError(f"no such file: {', '.join(missing)}")
    ws: Workspace = session.workspace  # opened once the arguments are known to be good
    return [ws.ingest(kind, path, progress=progress) for path in files]
