"""The access / portability request: everything held about one person, as JSON.

Discovered like erasure (:mod:`.erasure`): every warehouse table with a ``customer_id`` column,
every operations-store table with one (and the rows that reference those, such as the send
ledger of their messages), the audit records about them and their consent history.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from micromarketing.errors import NotFoundError
from micromarketing.privacy.results import PersonalDataExport
from micromarketing.store.models import AuditEvent, Base

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext


def export_person(ctx: StoreContext, customer_id: str, *, actor: str = "cli") -> PersonalDataExport:
    """Collect every row about ``customer_id`` from both stores; raises NotFoundError when none."""
    warehouse: dict[str, list[dict[str, Any]]] = {}
    for table, columns in sorted(ctx.warehouse.base_tables().items()):
        if "customer_id" in columns:
            expr = ctx.table(table)
            rows = expr.filter(expr.customer_id == customer_id).to_pyarrow().to_pylist()
            if rows:
                warehouse[table] = [_plain(r) for r in rows]
    operations: dict[str, list[dict[str, Any]]] = {}
    owners = {t.name: t for t in Base.metadata.sorted_tables if "customer_id" in t.c}
    with ctx.ops.session() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in owners:
                query = select(table).where(table.c.customer_id == customer_id)
            else:
                refs = [fk for fk in table.foreign_keys if fk.column.table.name in owners]
                if not refs:
                    continue
                fk = refs[0]
                parent = owners[fk.column.table.name]
                mine = select(fk.column).where(parent.c.customer_id == customer_id)
                query = select(table).where(fk.parent.in_(mine))
            rows = [_plain(dict(r)) for r in s.execute(query).mappings()]
            if rows:
                operations[table.name] = rows
        about = [_plain(dict(r)) for r in s.execute(
            select(AuditEvent.__table__).where(AuditEvent.subject == customer_id)).mappings()]
        if about:
            operations[AuditEvent.__tablename__] = about
    if not warehouse and not operations:
        raise NotFoundError(f"customer {customer_id!r}: nothing is held about this id")
    ctx.audit("privacy.export", customer_id, {"tables": sorted([*warehouse, *operations])}, actor=actor)
    return PersonalDataExport(customer_id=customer_id, generated_at=datetime.now(UTC),
                              warehouse=warehouse, operations=operations)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Dates as ISO text, decimals as floats: what JSON can hold."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = float(value)
        out[key] = value
    return out
