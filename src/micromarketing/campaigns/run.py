"""Running a campaign: store it, record every member's arm, write one outbox row per message.

:func:`run_campaign` plans the campaign (every variant is checked by rendering a sample of its
members, so a broken template stops the run before anything is written), refuses a plan over
budget, then in one transaction stores the :class:`~micromarketing.store.models.Campaign` (its
validated spec and fingerprint), one :class:`~micromarketing.store.models.Assignment` per member
(control and global holdout too: the measurement needs both arms) and one
:class:`~micromarketing.store.models.OutboxMessage` per treated member — ``pending`` (with
``not_before`` at the end of quiet hours when the policy defers it) or ``skipped`` with the
policy's reason.  The delivery worker sends what is pending.

Running the same file again inserts nothing and says so (members who joined the segment since
are added); a changed file under the same name is refused.  Rows are written with bulk
``INSERT`` statements (executemany), not ORM objects one by one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from micromarketing.campaigns.assign import CONTROL, GLOBAL_HOLDOUT
from micromarketing.campaigns.ingredients import Freezer
from micromarketing.campaigns.plan import (
    ADDRESS_COLUMN,
    CONTACT_COLUMNS,
    VariantDraft,
    draft_campaign,
    plan_from_draft,
    products_for,
)
from micromarketing.campaigns.results import CampaignStatus, CampaignSummary, RunResult, TestSend
from micromarketing.campaigns.spec import CampaignSpec, check_budget
from micromarketing.channels.base import message_key
from micromarketing.errors import ConflictError, InvalidInputError, NotFoundError
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

CHUNK = 20_000
CACHE_KIB = 262_144
# Core tables: a list of parameter dicts becomes one DBAPI executemany (the ORM bulk path splits it)
ASSIGNMENTS = Assignment.__table__
OUTBOX = OutboxMessage.__table__
STATES = ("pending", "sending", "sent", "deferred", "failed", "skipped")


def _now() -> datetime:
    return datetime.now(UTC)


def _existing(session: Session, name: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.name == name))


def run_campaign(
    ctx: StoreContext,
    spec: CampaignSpec,
    *,
    source: str = "<campaign>",
    now: datetime | None = None,
    progress: ProgressCallback = noop_progress,
    actor: str = "cli",
) -> RunResult:
    """Store ``spec`` as a campaign, assign its members and fill the outbox (see the module doc);
    ``actor`` is who the audit log names."""
    started = time.perf_counter()
    now = now or _now()
    if spec.send_window is not None and spec.send_window.end <= now:
        raise InvalidInputError(
            f"{source}: send_window.end: the window ended at {spec.send_window.end.isoformat()}; "
            "move it or remove it"
        )
    with ctx.ops.session() as session:
        existing = _existing(session, spec.name)
        if existing is not None and existing.spec_sha256 != spec.sha256:
            raise ConflictError(
                f"{source}: campaign {spec.name!r} was already run from a different file "
                f"(stored fingerprint {existing.spec_sha256[:12]}, this file {spec.sha256[:12]}); "
                "give the changed campaign a new name"
            )
        assigned: set[str] = set()
        if existing is not None:
            assigned = set(
                session.scalars(select(Assignment.customer_id).where(Assignment.campaign_id == existing.id))
            )
    when = max(now, spec.send_window.start) if spec.send_window else now
    draft = draft_campaign(
        ctx, spec, when=when, campaign_id=existing.id if existing else None, source=source, skip=assigned
    )
    plan = plan_from_draft(ctx, draft, source)
    if existing is None:
        check_budget(spec, plan.cost, source)
    total = sum(len(s.arms) for s in draft.segments)
    with ctx.ops.session() as session:
        campaign = _existing(session, spec.name)
        if campaign is None:
            campaign = Campaign(
                name=spec.name,
                status="running",
                objective=spec.objective,
                attribution_days=spec.attribution_days,
                control_share=spec.control_share,
                budget=spec.budget,
                priority=spec.priority,
                spec=spec.model_dump(mode="json"),
                spec_sha256=spec.sha256,
                started_at=now,
            )
            session.add(campaign)
            session.flush()
        campaign_id = campaign.id
        counts = _write(session, ctx, spec, draft, campaign_id, now, total, progress)
        status = campaign.status
    inserted = counts["assignments"]
    if existing is not None and inserted == 0:
        message = f"campaign {spec.name!r} was already run: nothing inserted, no message will be sent twice"
    elif existing is not None:
        message = f"campaign {spec.name!r} was already run: added {inserted} members who joined since"
    else:
        message = f"campaign {spec.name!r}: {counts['messages']} messages queued, {plan.control} in control"
    ctx.audit(
        "campaign.run",
        spec.name,
        {"sha256": spec.sha256, "assignments": inserted, "messages": counts["messages"]},
        actor=actor,
    )
    return RunResult(
        name=spec.name,
        campaign_id=campaign_id,
        status=status,
        already_run=existing is not None,
        members=sum(len(s.arms) for s in draft.segments),
        control=sum(int((s.arms == CONTROL).sum()) for s in draft.segments),
        global_holdout=sum(int((s.arms == GLOBAL_HOLDOUT).sum()) for s in draft.segments),
        assignments_inserted=inserted,
        messages_inserted=counts["messages"],
        pending=counts["pending"],
        deferred=counts["deferred"],
        skipped=counts["skipped"],
        skipped_by_rule=counts["by_rule"],
        seconds=round(time.perf_counter() - started, 3),
        message=message,
    )


ASSIGNMENT_COLUMNS = ("campaign_id", "customer_id", "segment", "arm", "channel", "offer_code", "assigned_at")
OUTBOX_COLUMNS = (
    "campaign_id", "idempotency_key", "message_id", "customer_id", "channel", "variant", "template_name",
    "template_version", "offer_code", "fields", "state", "reason", "attempts", "priority", "not_before",
    "lease_owner", "lease_expires_at", "is_test", "transactional", "created_at", "sent_at",
)  # fmt: skip


class BulkWriter:
    """Inserts many rows given as tuples.

    On SQLite the values are encoded here the way SQLAlchemy stores them (JSON text, naive UTC
    ``YYYY-MM-DD HH:MM:SS.ffffff`` timestamps) and handed to the driver's ``executemany`` in one
    call: SQLAlchemy's per-parameter processing costs more than the insert itself at a million
    rows.  Other databases go through a Core ``insert()`` with the same rows (their drivers
    batch it)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.raw = session.get_bind().dialect.name == "sqlite"
        self._stamps: dict[datetime, Any] = {}

    def when(self, value: datetime | None) -> Any:
        """A timestamp as the database takes it."""
        if value is None or not self.raw:
            return value
        stamp = self._stamps.get(value)
        if stamp is None:
            stamp = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            self._stamps[value] = stamp
        return stamp

    def json(self, value: Any) -> Any:
        """A JSON value as the database takes it."""
        return json.dumps(value) if self.raw else value

    @contextmanager
    def large_cache(self) -> Iterator[None]:
        """A 256 MiB page cache on SQLite while the rows go in (the default 2 MiB makes every
        random index insert read pages back), the default again afterwards."""
        if not self.raw:
            yield
            return
        conn = self.session.connection()
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        conn.exec_driver_sql(f"PRAGMA cache_size = {-CACHE_KIB}")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")

    def insert(self, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.raw:
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            self.session.connection().exec_driver_sql(sql, rows)
        else:
            self.session.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


def _write(
    session: Session,
    ctx: StoreContext,
    spec: CampaignSpec,
    draft: Any,
    campaign_id: int,
    now: datetime,
    total: int,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Bulk-insert the assignments and outbox rows of ``draft``; returns the counts."""
    writer = BulkWriter(session)
    with writer.large_cache():
        return _write_rows(writer, ctx, spec, draft, campaign_id, now, total, progress)


def _write_rows(
    writer: BulkWriter,
    ctx: StoreContext,
    spec: CampaignSpec,
    draft: Any,
    campaign_id: int,
    now: datetime,
    total: int,
    progress: ProgressCallback,
) -> dict[str, Any]:
    counts: dict[str, Any] = {"assignments": 0, "messages": 0, "pending": 0, "deferred": 0, "skipped": 0}
    by_rule: dict[str, int] = {}
    stamp = writer.when(now)
    for seg in draft.segments:
        arms = seg.arms.tolist()
        ids = seg.customer_ids.tolist()
        detail = {v.spec.name: (v.spec.channel, v.spec.offer) for v in seg.variants}
        for offset in range(0, len(ids), CHUNK):
            batch = [
                (campaign_id, cid, seg.name, arm, *detail.get(arm, (None, None)), stamp)
                for cid, arm in zip(ids[offset : offset + CHUNK], arms[offset : offset + CHUNK], strict=True)
            ]
            writer.insert(ASSIGNMENTS, ASSIGNMENT_COLUMNS, batch)
            counts["assignments"] += len(batch)
            progress("assign", counts["assignments"], total)
        for v in seg.variants:
            outcome = v.verdict["outcome"].to_numpy()
            sending = (outcome == "send") | (outcome == "quiet_hours")
            counts["pending"] += int(sending.sum())
            counts["deferred"] += int((outcome == "quiet_hours").sum())
            counts["skipped"] += int((~sending).sum())
            for rule, n in zip(*np.unique(outcome[~sending], return_counts=True), strict=True):
                by_rule[str(rule)] = by_rule.get(str(rule), 0) + int(n)
            for batch in _outbox_rows(ctx, spec, v, campaign_id, now, writer):
                writer.insert(OUTBOX, OUTBOX_COLUMNS, batch)
                counts["messages"] += len(batch)
                progress("outbox", counts["messages"], total)
    counts["by_rule"] = by_rule
    return counts


def _outbox_rows(
    ctx: StoreContext,
    spec: CampaignSpec,
    v: VariantDraft,
    campaign_id: int,
    now: datetime,
    writer: BulkWriter,
) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of outbox rows, one per treated member of variant ``v`` (skipped rows carry the
    policy's reason), as tuples in :data:`OUTBOX_COLUMNS` order."""
    freezer = v.freezer
    assert freezer is not None
    channel = v.spec.channel
    template = v.compiled.info if v.compiled else None
    name, version = (template.name, template.version) if template else (None, None)
    outcome = v.verdict["outcome"].to_numpy()
    reason = v.verdict["reason"].tolist()
    sending = ((outcome == "send") | (outcome == "quiet_hours")).tolist()
    not_before = [writer.when(t) for t in v.verdict["not_before"].tolist()]
    created = writer.when(now)
    fields_of, to_json = freezer.fields, writer.json
    variant, offer, priority, transactional = v.spec.name, v.spec.offer, spec.priority, spec.transactional
    keep = freezer.keys
    table = (
        v.rows
        if keep is None
        else v.rows.select([c for c in v.rows.column_names if c in keep or c in ("customer_id", "timezone")])
    )
    for offset in range(0, table.num_rows, CHUNK):
        rows = table.slice(offset, CHUNK).to_pylist()
        products = products_for(ctx, v, [r["customer_id"] for r in rows])
        batch = []
        for i, row in enumerate(rows, start=offset):
            cid = row["customer_id"]
            key = message_key(spec.name, cid, channel)
            fields = fields_of(row, products=products.get(cid, ()), timezone=row.get("timezone"))
            go = sending[i]
            batch.append(
                (
                    campaign_id, key, key, cid, channel, variant, name, version, offer, to_json(fields),
                    "pending" if go else "skipped", reason[i], 0, priority, not_before[i] if go else created,
                    None, None, False, transactional, created, None,
                )
            )  # fmt: skip
        yield batch


# ---------------------------------------------------------------------------------------------
# proofs, status and list
# ---------------------------------------------------------------------------------------------
def send_tests(
    ctx: StoreContext, spec: CampaignSpec, addresses: Sequence[str], *, source: str = "<campaign>"
) -> TestSend:
    """Queue one proof of each variant to each seed address, rendered for a sample member.

    Rows are ``is_test`` (outside caps and measurement), belong to no campaign and to the
    pseudo-customer ``test:{address}`` (so the proof's unsubscribe link is nobody's)."""
    if not addresses:
        raise InvalidInputError("give at least one --to address")
    draft = draft_campaign(ctx, spec, source=source)
    nonce = secrets.token_hex(4)
    now = _now()
    rows: list[dict[str, Any]] = []
    variants: list[str] = []
    skipped: list[str] = []
    for seg in draft.segments:
        for v in seg.variants:
            label = f"{seg.name}/{v.spec.name}"
            contact = ADDRESS_COLUMN.get(v.spec.channel)
            if (
                v.rows.num_rows == 0
                or v.compiled is None
                or (contact is None and v.spec.channel != "webhook")
            ):
                skipped.append(
                    f"{label}: no proof for a {v.spec.channel} variant without members or template"
                )
                continue
            sample = v.rows.slice(0, 1).to_pylist()[0]
            products = products_for(ctx, v, [sample["customer_id"]])
            variants.append(label)
            for address in addresses:
                test_id = f"test:{address}"
                row = dict(sample)
                for column in CONTACT_COLUMNS[v.spec.channel]:
                    row.pop(column, None)
                fields = Freezer(
                    v.compiled, channel=v.spec.channel, segment=seg.context, offer=v.offer
                ).fields(row, products=products.get(sample["customer_id"], ()))
                fields[contact or "webhook_to"] = address
                key = message_key(f"{spec.name}:test:{nonce}:{label}", test_id, v.spec.channel)
                rows.append(
                    {
                        "campaign_id": None,
                        "idempotency_key": key,
                        "message_id": key,
                        "customer_id": test_id,
                        "channel": v.spec.channel,
                        "variant": v.spec.name,
                        "template_name": v.compiled.info.name,
                        "template_version": v.compiled.info.version,
                        "offer_code": v.spec.offer,
                        "fields": fields,
                        "state": "pending",
                        "reason": f"test of {spec.name} {label}",
                        "attempts": 0,
                        "priority": spec.priority,
                        "not_before": now,
                        "is_test": True,
                        "transactional": False,
                        "created_at": now,
                    }
                )
    if rows:
        with ctx.ops.session() as session:
            session.execute(OUTBOX.insert(), rows)
    ctx.audit("campaign.test", spec.name, {"to": list(addresses), "messages": len(rows)})
    return TestSend(
        name=spec.name, messages=len(rows), to=list(addresses), variants=variants, skipped=skipped
    )


def campaign_status(ctx: StoreContext, name: str) -> CampaignStatus:
    """Counts per outbox state and of the control group for campaign ``name``."""
    with ctx.ops.session() as session:
        campaign = _existing(session, name)
        if campaign is None:
            known = sorted(session.scalars(select(Campaign.name)))
            hint = f" (known: {', '.join(known[:20])})" if known else " (none run yet: `campaign run FILE`)"
            raise NotFoundError(f"no campaign named {name!r}{hint}")
        states = dict(
            session.execute(
                select(OutboxMessage.state, func.count())
                .where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.is_test.is_(False))
                .group_by(OutboxMessage.state)
            ).all()
        )
        arms = dict(
            session.execute(
                select(Assignment.arm, func.count())
                .where(Assignment.campaign_id == campaign.id)
                .group_by(Assignment.arm)
            ).all()
        )
        reasons = session.execute(
            select(OutboxMessage.reason, func.count().label("n"))
            .where(
                OutboxMessage.campaign_id == campaign.id,
                OutboxMessage.is_test.is_(False),
                OutboxMessage.state == "skipped",
            )
            .group_by(OutboxMessage.reason)
            .order_by(func.count().desc())
        ).all()
        status = campaign.status
    return CampaignStatus(
        name=name,
        status=status,
        **{state: int(states.get(state, 0)) for state in STATES},
        control=int(arms.get(CONTROL, 0)),
        global_holdout=int(arms.get(GLOBAL_HOLDOUT, 0)),
        members=int(sum(arms.values())),
        skipped_reasons={reason or "unknown": int(n) for reason, n in reasons},
    )


def list_campaigns(ctx: StoreContext) -> list[CampaignSummary]:
    """Every campaign, newest first, with its member and message counts."""
    with ctx.ops.session() as session:
        members = dict(
            session.execute(
                select(Assignment.campaign_id, func.count()).group_by(Assignment.campaign_id)
            ).all()
        )
        messages = dict(
            session.execute(
                select(OutboxMessage.campaign_id, func.count())
                .where(OutboxMessage.is_test.is_(False))
                .group_by(OutboxMessage.campaign_id)
            ).all()
        )
        return [
            CampaignSummary(
                name=c.name,
                status=c.status,
                objective=c.objective,
                priority=c.priority,
                members=int(members.get(c.id, 0)),
                messages=int(messages.get(c.id, 0)),
                created_at=c.created_at,
                started_at=c.started_at,
                finished_at=c.finished_at,
            )
            for c in session.scalars(
                select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc())
            )
        ]


def campaign_assignments(ctx: StoreContext, name: str) -> pd.DataFrame:
    """Every member of campaign ``name``: ``customer_id``, ``segment``, ``arm``, ``channel``,
    ``assigned_at`` and ``delivered`` (a non-test message of theirs was sent)."""
    with ctx.ops.session() as session:
        campaign = _existing(session, name)
        if campaign is None:
            raise NotFoundError(f"no campaign named {name!r}")
        rows = session.execute(
            select(Assignment.customer_id, Assignment.segment, Assignment.arm, Assignment.channel,
                   Assignment.assigned_at)
            .where(Assignment.campaign_id == campaign.id)
            .order_by(Assignment.customer_id)
        ).all()
        sent = set(
            session.scalars(
                select(OutboxMessage.customer_id).where(
                    OutboxMessage.campaign_id == campaign.id,
                    OutboxMessage.state == "sent",
                    OutboxMessage.is_test.is_(False),
                )
            )
        )
    frame = pd.DataFrame(rows, columns=["customer_id", "segment", "arm", "channel", "assigned_at"])
    frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], utc=True)
    frame["delivered"] = frame["customer_id"].isin(sent)
    return frame
