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

import secrets
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, insert, select
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
from micromarketing.campaigns.spec import CampaignSpec, check_budget
from micromarketing.channels.base import message_key
from micromarketing.errors import ConflictError, InvalidInputError, NotFoundError
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Assignment, Campaign, OutboxMessage

CHUNK = 20_000
STATES = ("pending", "sending", "sent", "deferred", "failed", "skipped")


class RunResult(BaseModel):
    """What one ``campaign run`` wrote (all zero on a re-run of the same file)."""

    name: str
    campaign_id: int
    status: str
    already_run: bool
    members: int
    control: int
    global_holdout: int
    assignments_inserted: int
    messages_inserted: int
    pending: int
    deferred: int  # pending with not_before at the end of the recipient's quiet hours
    skipped: int
    skipped_by_rule: dict[str, int]
    seconds: float
    message: str


class CampaignStatus(BaseModel):
    """Integer counts of a campaign's outbox rows per state, and of its control group."""

    name: str
    status: str
    pending: int
    sending: int
    sent: int
    deferred: int
    failed: int
    skipped: int
    control: int
    global_holdout: int
    members: int


class CampaignSummary(BaseModel):
    """One line of ``campaign list``."""

    name: str
    status: str
    objective: str
    priority: int
    members: int
    messages: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TestSend(BaseModel):
    """Proof messages queued by ``campaign test``."""

    name: str
    messages: int
    to: list[str]
    variants: list[str]
    skipped: list[str]


def _now() -> datetime:
    return datetime.now(UTC)


def _existing(session: Session, name: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.name == name))


def _chunks(rows: Iterator[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_campaign(
    ctx: StoreContext,
    spec: CampaignSpec,
    *,
    source: str = "<campaign>",
    now: datetime | None = None,
    progress: ProgressCallback = noop_progress,
) -> RunResult:
    """Store ``spec`` as a campaign, assign its members and fill the outbox (see the module doc)."""
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
    counts: dict[str, Any] = {"assignments": 0, "messages": 0, "pending": 0, "deferred": 0, "skipped": 0}
    by_rule: dict[str, int] = {}
    done = 0
    for seg in draft.segments:
        variant_of = {v.spec.name: v.spec for v in seg.variants}

        def assignments(seg: Any = seg, variant_of: dict[str, Any] = variant_of) -> Iterator[dict[str, Any]]:
            for cid, arm in zip(seg.customer_ids.tolist(), seg.arms.tolist(), strict=True):
                v = variant_of.get(arm)
                yield {
                    "campaign_id": campaign_id,
                    "customer_id": cid,
                    "segment": seg.name,
                    "arm": arm,
                    "channel": v.channel if v else None,
                    "offer_code": v.offer if v else None,
                    "assigned_at": now,
                }

        for batch in _chunks(assignments()):
            session.execute(insert(Assignment), batch)
            counts["assignments"] += len(batch)
            done += len(batch)
            progress("assign", done, total)
        for v in seg.variants:
            for batch in _chunks(_outbox_rows(ctx, spec, v, campaign_id, now)):
                session.execute(insert(OutboxMessage), batch)
                counts["messages"] += len(batch)
                for row in batch:
                    if row["state"] == "skipped":
                        counts["skipped"] += 1
                        rule = row["reason"].partition(":")[0]
                        by_rule[rule] = by_rule.get(rule, 0) + 1
                    else:
                        counts["pending"] += 1
                        counts["deferred"] += row["not_before"] > now
                progress("outbox", counts["messages"], total)
    counts["by_rule"] = by_rule
    return counts


def _outbox_rows(
    ctx: StoreContext, spec: CampaignSpec, v: VariantDraft, campaign_id: int, now: datetime
) -> Iterator[dict[str, Any]]:
    """One outbox row per treated member of variant ``v`` (skipped rows carry the reason)."""
    freezer = v.freezer
    assert freezer is not None
    channel = v.spec.channel
    template = v.compiled.info if v.compiled else None
    outcome = v.verdict["outcome"].to_numpy()
    reason = v.verdict["reason"].to_numpy()
    not_before = [t.to_pydatetime() for t in v.verdict["not_before"]]
    for offset in range(0, v.rows.num_rows, CHUNK):
        rows = v.rows.slice(offset, CHUNK).to_pylist()
        products = products_for(ctx, v, [r["customer_id"] for r in rows])
        for i, row in enumerate(rows, start=offset):
            cid = row["customer_id"]
            key = message_key(spec.name, cid, channel)
            sending = outcome[i] in ("send", "quiet_hours")
            yield {
                "campaign_id": campaign_id,
                "idempotency_key": key,
                "message_id": key,
                "customer_id": cid,
                "channel": channel,
                "variant": v.spec.name,
                "template_name": template.name if template else None,
                "template_version": template.version if template else None,
                "offer_code": v.spec.offer,
                "fields": freezer.fields(row, products=products.get(cid, ()), timezone=row.get("timezone")),
                "state": "pending" if sending else "skipped",
                "reason": reason[i],
                "attempts": 0,
                "priority": spec.priority,
                "not_before": not_before[i] if sending else now,
                "is_test": False,
                "transactional": spec.transactional,
                "created_at": now,
            }


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
            session.execute(insert(OutboxMessage), rows)
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
        status = campaign.status
    return CampaignStatus(
        name=name,
        status=status,
        **{state: int(states.get(state, 0)) for state in STATES},
        control=int(arms.get(CONTROL, 0)),
        global_holdout=int(arms.get(GLOBAL_HOLDOUT, 0)),
        members=int(sum(arms.values())),
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
