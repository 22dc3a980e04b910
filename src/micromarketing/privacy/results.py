"""What the privacy package returns (Pydantic models the CLI's ``--json``, the REST API and the
web pages serialise alike): audit entries, erasure reports, personal-data exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntry(BaseModel):
    """One record of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


class ErasureReport(BaseModel):
    """What :func:`forget` removed (counts and paths only: never the person's data)."""

    subject: str  # "erased:<hash prefix>", the label the audit log and reports use
    warehouse_rows: dict[str, int]
    ops_rows: dict[str, int]
    ops_redacted: dict[str, int]
    files_rewritten: list[str]
    files_not_inspected: list[str]
    suppressions_added: int
    already_erased: bool = False


class PersonalDataExport(BaseModel):
    """What is held about ``customer_id``, table by table (values as JSON scalars)."""

    customer_id: str
    generated_at: datetime
    warehouse: dict[str, list[dict[str, Any]]]
    operations: dict[str, list[dict[str, Any]]]

    @property
    def record_count(self) -> int:
        return sum(len(rows) for rows in (*self.warehouse.values(), *self.operations.values()))
