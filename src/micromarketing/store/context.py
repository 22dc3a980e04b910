"""The small context every domain package receives: settings and both stores, no domain knowledge.

Domain code (ingest, profiles, segments, personalize, campaigns, channels, measure, privacy) takes
a :class:`StoreContext` instead of the ``Workspace`` facade, so dependencies point one way:
``workspace.py`` sits above the domain packages and wires them; they never import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis.expr.types as ir

from micromarketing.config import Settings
from micromarketing.store.models import AuditEvent
from micromarketing.store.ops import OperationsStore
from micromarketing.store.warehouse import Warehouse, open_warehouse


@dataclass
class StoreContext:
    """A workspace's root directory, its settings, and its open warehouse and operations store."""

    root: Path
    settings: Settings
    warehouse: Warehouse
    ops: OperationsStore

    @classmethod
    def connect(cls, root: Path, settings: Settings) -> StoreContext:
        """Build the context of the workspace at ``root`` (the warehouse connects lazily)."""
        return cls(root, settings, open_warehouse(root, settings), OperationsStore(root, settings.ops.url))

    def table(self, name: str) -> ir.Table:
        """A warehouse table as an Ibis expression."""
        return self.warehouse.table(name)

    def audit(
        self, action: str, subject: str, details: dict[str, Any] | None = None, actor: str = "cli"
    ) -> None:
        """Append one record to the audit log."""
        with self.ops.session() as session:
            session.add(AuditEvent(action=action, subject=subject, details=details or {}, actor=actor))

    def close(self) -> None:
        """Release both stores (DuckDB allows one writer process per file)."""
        self.warehouse.close()
        self.ops.close()
