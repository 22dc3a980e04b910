"""Row models of the operations store.

One declarative ``Base`` for the whole store; each part of the loop adds its tables here so that
``OperationsStore.create_all`` and migrations see one schema.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class IngestRun(Base):
    """One ingest of one file: what was accepted, rejected and where the rejects went."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    rows_read: Mapped[int]
    accepted: Mapped[int]
    rejected: Mapped[int]
    quarantine_path: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Append-only record of who did what that matters (sensitive targeting, erasure, sends)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), default="cli")
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ModelVersion(Base):
    """A fitted model (e.g. CLV), versioned per kind, with the as-of date of its data."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    as_of: Mapped[date] = mapped_column(Date)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """A named segment; its rule history lives in :class:`SegmentVersion`."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="rule")  # rule | discovered
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SegmentVersion(Base):
    """One version of a segment's definition (rule text or persona) and its guard decisions."""

    __tablename__ = "segment_versions"
    __table_args__ = (UniqueConstraint("segment_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    version: Mapped[int]
    rule: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Template(Base):
    """One version of a message template: its parts (subject, html, text, sms) and shared blocks."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    parts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Offer(Base):
    """An offer a campaign can make: its kind, value, cost, eligibility rule and validity window."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # discount | free_shipping | bundle | loyalty_points
    value: Mapped[float]
    cost: Mapped[float]
    rule: Mapped[str] = mapped_column(Text, default="")
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VersionCounter(Base):
    """The last version allocated to one named object (a CLV fit series, a segment, a template).

    One row per (kind, name), bumped inside the transaction that stores the new version, so two
    concurrent writers never get the same number (see :mod:`micromarketing.store.versions`).
    """

    __tablename__ = "version_counters"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    last: Mapped[int] = mapped_column(Integer, default=0)


# -- campaigns & delivery (#13) ---------------------------------------------------------------
class Campaign(Base):
    """A campaign as run: its validated spec (the YAML file's content) and its lifecycle.

    ``status``: planned → running → finished (never finished while messages are pending or
    retrying).  ``spec_sha256`` tells a re-run of the same file from a changed one."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="planned")
    objective: Mapped[str] = mapped_column(String(16), default="conversion")
    attribution_days: Mapped[int] = mapped_column(Integer, default=7)
    control_share: Mapped[float] = mapped_column(default=0.1)
    budget: Mapped[float | None]
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec_sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Assignment(Base):
    """One member of a campaign's segment and the arm it was drawn into (control or a variant).

    Written for control members too: measurement compares both arms from ``assigned_at``."""

    __tablename__ = "campaign_assignments"
    __table_args__ = (UniqueConstraint("campaign_id", "customer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    segment: Mapped[str] = mapped_column(String(128))
    arm: Mapped[str] = mapped_column(String(64))  # "control" or the variant's name
    channel: Mapped[str | None] = mapped_column(String(16))
    offer_code: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """One message to deliver, frozen as its ingredients rather than its rendered body.

    ``fields`` holds the person's values the template uses, so a retry renders the identical
    message.  ``idempotency_key`` (campaign, customer, channel) makes a re-run insert nothing;
    ``message_id`` stays the same on every attempt.  States: pending → sending → sent |
    deferred | failed | skipped; ``lease_owner``/``lease_expires_at`` let several workers share
    the outbox and let a crashed worker's message be taken over."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str | None] = mapped_column(String(64))
    template_name: Mapped[str | None] = mapped_column(String(128))
    template_version: Mapped[int | None]
    offer_code: Mapped[str | None] = mapped_column(String(128))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    is_test: Mapped[bool] = mapped_column(default=False)
    transactional: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


# Claims take the due rows of one state in this order (``campaigns/outbox.py``): with the index a
# claim reads only the rows it takes instead of sorting the whole outbox (0.3 s per claim of 100
# at 50k pending rows without it).
Index(
    "ix_outbox_due",
    OutboxMessage.state,
    OutboxMessage.priority.desc(),
    OutboxMessage.not_before,
    OutboxMessage.id,
)


class DeliveryAttempt(Base):
    """The send ledger: one row per attempt at one outbox message (who, what, when, outcome)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    attempt: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # sent | temporary_failure | permanent_failure | skipped | deferred
    status: Mapped[str] = mapped_column(String(32))
    code: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(128))


class Suppression(Base):
    """An address or customer never to contact again on a channel (``channel`` NULL: any).

    ``kind``: hard_bounce | complaint | unsubscribe | erased | manual.  Erased customers keep only
    ``subject_hash`` (a salted hash of their id and contact points), no customer id."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(128), index=True)
    subject_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    channel: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- REST API (#15) ----------------------------------------------------------------------------
class ApiKey(Base):
    """An API key: stored as a hash (the key is shown once), with a role and revocation time."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | marketer | admin
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
