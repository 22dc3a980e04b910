"""Privacy: the consent ledger, erasure, access export, retention and the audit log.

Cuts across the loop: it reads and deletes in both stores generically (every table holding a
customer id) rather than knowing each part's tables.  ``ws.privacy`` is
:class:`~micromarketing.privacy.service.PrivacyService`.
"""

from micromarketing.privacy.consent import ConsentRecord, current_consent
from micromarketing.privacy.erasure import ErasureReport, is_erased
from micromarketing.privacy.results import AuditEntry, PersonalDataExport
from micromarketing.privacy.retention import RetentionReport

__all__ = [
    "AuditEntry",
    "ConsentRecord",
    "ErasureReport",
    "PersonalDataExport",
    "RetentionReport",
    "current_consent",
    "is_erased",
]
