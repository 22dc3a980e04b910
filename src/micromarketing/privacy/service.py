"""``ws.privacy``: consent ledger, erasure, access export, retention and the audit log."""

from __future__ import annotations

from datetime import datetime

from micromarketing.privacy.audit import AuditEntry, audit_count, audit_log
from micromarketing.privacy.consent import (
    DEFAULT_PURPOSE,
    ConsentRecord,
    consent_history,
    consent_state,
    record_consent,
)
from micromarketing.privacy.erasure import ErasureReport, forget, is_erased
from micromarketing.privacy.export import PersonalDataExport, export_person
from micromarketing.privacy.retention import RetentionReport, retain
from micromarketing.store.context import StoreContext


class PrivacyService:
    """The privacy sub-facade of a workspace (``ws.privacy``).  ``actor`` names who acts
    (``cli:<user>``, an API key's name) in the audit log."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    def record_consent(
        self, customer_id: str, channel: str, status: str, *, purpose: str = DEFAULT_PURPOSE,
        source: str = "cli", at: datetime | None = None, valid_until: datetime | None = None,
        actor: str = "cli",
    ) -> ConsentRecord:
        """Append one consent record (``opt_in`` / ``opt_out``; ``valid_until`` ends it) to the ledger."""
        return record_consent(self.ctx, customer_id, channel, status, purpose=purpose, source=source,
                              at=at, valid_until=valid_until, actor=actor)

    def consent_history(self, customer_id: str) -> list[ConsentRecord]:
        """Every consent record of one person, oldest first."""
        return consent_history(self.ctx, customer_id)

    def consent(self, customer_id: str, *, at: datetime | None = None) -> list[ConsentRecord]:
        """The consent in force for one person at ``at`` (default now): per channel and purpose,
        the latest record still valid then."""
        return consent_state(self.ctx, customer_id, at=at)

    def forget(self, customer_id: str, *, actor: str = "cli") -> ErasureReport:
        """Erase one person from both stores and the workspace's files; keep only salted hashes."""
        return forget(self.ctx, customer_id, actor=actor)

    def is_erased(self, customer_id: str | None = None, email: str | None = None,
                  phone: str | None = None) -> bool:
        """True when the id, email or phone belongs to an erased person."""
        return is_erased(self.ctx, customer_id, email, phone)

    def export(self, customer_id: str, *, actor: str = "cli") -> PersonalDataExport:
        """Everything held about one person (the GDPR access / portability request)."""
        return export_person(self.ctx, customer_id, actor=actor)

    def retain(
        self, *, dry_run: bool = False, now: datetime | None = None, actor: str = "cli"
    ) -> RetentionReport:
        """Purge by the ``[privacy]`` retention rules; ``dry_run`` only counts."""
        return retain(self.ctx, dry_run=dry_run, now=now, actor=actor)

    def audit_log(self, *, since: datetime | None = None, action: str | None = None,
                  limit: int = 1000, offset: int = 0) -> list[AuditEntry]:
        """The newest ``limit`` records of the audit log after skipping ``offset``, oldest first."""
        return audit_log(self.ctx, since=since, action=action, limit=limit, offset=offset)

    def audit_count(self, *, since: datetime | None = None, action: str | None = None) -> int:
        """How many audit records match the same filters as :meth:`audit_log`."""
        return audit_count(self.ctx, since=since, action=action)
