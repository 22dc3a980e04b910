"""The Workspace facade: one directory holding settings, the warehouse and the operations store.

CLI, REST API, web dashboard and Python users all go through a Workspace; it wires settings and
both stores and exposes the domain operations as methods, delegating to the domain packages.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir

from micromarketing.config import SETTINGS_FILE, Settings, load_settings, write_default_settings
from micromarketing.errors import WorkspaceError
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store import OperationsStore, Warehouse
from micromarketing.store.models import AuditEvent

if TYPE_CHECKING:
    from micromarketing.ingest import IngestResult
    from micromarketing.profiles import ProfileResult

WORKSPACE_ENV = "MICROMARKETING_WORKSPACE"


class Workspace:
    """A micromarketing workspace directory and its open stores."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.warehouse = Warehouse(root, settings)
        self.ops = OperationsStore(root, settings.ops.url)

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def init(cls, root: str | os.PathLike[str]) -> Workspace:
        """Create a workspace in ``root`` (settings file, warehouse, operations store)."""
        path = Path(root)
        if (path / SETTINGS_FILE).exists():
            raise WorkspaceError(f"{path} is already a workspace ({SETTINGS_FILE} exists)")
        path.mkdir(parents=True, exist_ok=True)
        write_default_settings(path)
        ws = cls(path.resolve(), load_settings(path))
        ws.warehouse.ensure_schema()
        ws.ops.create_all()
        return ws

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        """Open an existing workspace: ``root``, else $MICROMARKETING_WORKSPACE, else the cwd."""
        path = Path(root or os.environ.get(WORKSPACE_ENV) or ".").resolve()
        if not (path / SETTINGS_FILE).exists():
            raise WorkspaceError(
                f"{path} is not a workspace (no {SETTINGS_FILE}); run `micromarketing init {path}`"
            )
        ws = cls(path, load_settings(path))
        ws.ops.create_all()
        return ws

    def close(self) -> None:
        """Release both stores (DuckDB allows one writer process per file)."""
        self.warehouse.close()
        self.ops.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- data -------------------------------------------------------------------------------
    def table(self, name: str) -> ir.Table:
        """A warehouse table as an Ibis expression (``.to_pandas()`` / ``.to_polars()`` for frames)."""
        return self.warehouse.table(name)

    def ingest(
        self, kind: str, path: str | os.PathLike[str], progress: ProgressCallback = noop_progress
    ) -> IngestResult:
        """Validate and upsert one file of ``kind``; rejected rows go to a quarantine file."""
        from micromarketing.ingest import ingest_file

        return ingest_file(self, kind, Path(path), progress=progress)

    def profile(self, as_of: date | None = None, progress: ProgressCallback = noop_progress) -> ProfileResult:
        """Build the ``profiles`` table as of ``as_of`` (default: the day after the last order)."""
        from micromarketing.profiles import build_profiles

        return build_profiles(self, as_of=as_of, progress=progress)

    # -- audit ------------------------------------------------------------------------------
    def audit(
        self, action: str, subject: str, details: dict[str, Any] | None = None, actor: str = "cli"
    ) -> None:
        """Append one record to the audit log."""
        with self.ops.session() as session:
            session.add(AuditEvent(action=action, subject=subject, details=details or {}, actor=actor))
