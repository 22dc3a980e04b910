"""The consent ledger: append-only records in the warehouse ``consent`` table.

A record is (customer, channel, purpose, status, source, recorded_at, valid_until).
``consent.csv`` ingest appends records with the statuses it accepts (``opt_in``, ``opt_out``;
``purpose`` defaults to ``marketing``; ``valid_until`` is optional); :func:`record_consent`
appends one (the preference centre, the API, the CLI).  Nothing updates or deletes a record
except erasure and retention.

**In force at moment t** (the one rule, :func:`_in_force`): per (customer, channel, purpose), of
the records still valid at t (``valid_until`` NULL or after t), the one with the latest
``recorded_at``; on a tie in time ``opt_out`` wins.  So a record with an end (a pause: an
``opt_out`` until the pause's end) hides the records beneath it until then, and the latest of
those is in force again afterwards without any write.  The moment is a parameter of every
reader (plan time, send time; default now); records written after it still count, since the
question is "may we contact them at t, as far as we know now".  The DuckDB statements the hot
paths bind (:data:`_IN_FORCE_SQL` and the segment of one's) are built from the same fragments
(:data:`VALID_AT_SQL`, :data:`LATEST_FIRST_SQL`), and a test holds them to the Ibis expression
and to a plain fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel

from micromarketing.errors import InvalidInputError, PolicyError
from micromarketing.privacy.erasure import is_erased
from micromarketing.store.schema import CONSENT, CONSENT_CHANNELS, CONSENT_STATUSES, DEFAULT_PURPOSE

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext

class ConsentRecord(BaseModel):
    """One entry of the ledger (``valid_until``: when it stops counting; None: never)."""

    customer_id: str
    channel: str
    purpose: str
    status: str
    source: str | None
    recorded_at: datetime
    valid_until: datetime | None = None


def record_consent(
    ctx: StoreContext,
    customer_id: str,
    channel: str,
    status: str,
    *,
    purpose: str = DEFAULT_PURPOSE,
    source: str = "cli",
    at: datetime | None = None,
    valid_until: datetime | None = None,
    actor: str = "cli",
) -> ConsentRecord:
    """Append one consent record (``at`` defaults to now, UTC; ``valid_until``, when given, ends
    it) and audit it.

    Raises :class:`InvalidInputError` naming the field for an unknown channel or status, an
    empty id/purpose or an end not after ``at``, and :class:`PolicyError` for a person who was
    erased.
    """
    customer_id = customer_id.strip()
    purpose = purpose.strip()
    if not customer_id:
        raise InvalidInputError("customer_id: must not be empty")
    if channel not in CONSENT_CHANNELS:
        raise InvalidInputError(f"channel: {channel!r} is not one of {', '.join(CONSENT_CHANNELS)}")
    if status not in CONSENT_STATUSES:
        raise InvalidInputError(f"status: {status!r} is not one of {', '.join(CONSENT_STATUSES)}")
    if not purpose or len(purpose) > 64:
        raise InvalidInputError("purpose: must be 1 to 64 characters")
    if is_erased(ctx, customer_id=customer_id):
        raise PolicyError(f"customer {customer_id!r} was erased: no consent is recorded for them")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    end = valid_until.astimezone(UTC) if valid_until is not None else None
    if end is not None and end <= when:
        raise InvalidInputError(
            f"valid_until: {end.isoformat()} is not later than recorded_at {when.isoformat()}"
        )
    record = ConsentRecord(customer_id=customer_id, channel=channel, purpose=purpose, status=status,
                           source=source, recorded_at=when, valid_until=end)
    row = ibis.memtable(
        {"customer_id": [customer_id], "channel": [channel], "status": [status], "recorded_at": [when],
         "source": [source], "purpose": [purpose], "valid_until": [end]},
        schema={"customer_id": "string", "channel": "string", "status": "string",
                "recorded_at": "timestamp('UTC')", "source": "string", "purpose": "string",
                "valid_until": "timestamp('UTC')"},
    )
    ctx.warehouse.upsert(CONSENT.name, row.select(*CONSENT.column_names))
    details = {"channel": channel, "purpose": purpose, "status": status, "source": source}
    if end is not None:
        details["valid_until"] = end.isoformat()
    ctx.audit("consent.record", customer_id, details, actor=actor)
    return record


def consent_ledger(ctx: StoreContext) -> ir.Table:
    """The ledger with ``purpose`` filled in (records ingested before it existed are marketing)."""
    ledger = ctx.table(CONSENT.name)
    return ledger.mutate(purpose=ledger.purpose.fill_null(DEFAULT_PURPOSE))


def current_consent(
    ctx: StoreContext, customer_id: str | None = None, *, at: datetime | None = None
) -> ir.Table:
    """Per (customer, channel, purpose) the record in force at ``at`` (default now).

    An Ibis expression; ``customer_id`` narrows it to one person.
    """
    ledger = consent_ledger(ctx)
    if customer_id is not None:
        ledger = ledger.filter(ledger.customer_id == customer_id)
    return _in_force(ledger, at)


def moment(at: datetime | None) -> datetime:
    """The moment consent is asked about: ``at`` in UTC, default now."""
    return (at or datetime.now(UTC)).astimezone(UTC)


def _in_force(ledger: ir.Table, at: datetime | None) -> ir.Table:
    """The records in force at ``at`` (the module docstring's rule, the one definition): of the
    records still valid then, the latest per (customer, channel, purpose); on a tie in time
    ``opt_out`` wins."""
    valid = ledger.valid_until.isnull() | (ledger.valid_until > ibis.literal(moment(at), "timestamp('UTC')"))
    latest = ibis.window(
        group_by=["customer_id", "channel", "purpose"],
        order_by=[ibis.desc("recorded_at"), ibis.desc("status")],
    )
    ranked = ledger.filter(valid).mutate(_rank=ibis.row_number().over(latest))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def consent_in_force(
    ctx: StoreContext,
    channels: Sequence[str],
    customer_ids: Sequence[str] | None = None,
    purpose: str = DEFAULT_PURPOSE,
    *,
    at: datetime | None = None,
) -> ir.Table:
    """``customer_id, channel, status`` in force at ``at`` for ``purpose`` on ``channels``
    (campaign policy's question), for ``customer_ids`` or everyone; empty without a ledger."""
    if not ctx.warehouse.has_table(CONSENT.name):
        return ibis.memtable(
            {"customer_id": [], "channel": [], "status": []},
            schema={"customer_id": "string", "channel": "string", "status": "string"},
        )
    ledger = consent_ledger(ctx)
    ledger = ledger.filter(ledger.channel.isin(list(channels)), ledger.purpose == purpose)
    if customer_ids is not None:
        ledger = ledger.filter(ledger.customer_id.isin(list(customer_ids)))
    return _in_force(ledger, at).select("customer_id", "channel", "status")


# The rule of _in_force as SQL fragments, for the DuckDB statements hot paths bind: a record is
# valid at the bound moment, and the latest valid record comes first.
VALID_AT_SQL = "(valid_until IS NULL OR valid_until > {at})"
LATEST_FIRST_SQL = "recorded_at DESC, status DESC"

# consent_in_force for a batch as one statement with the lists bound: a delivery batch asks this
# once per claim, and the Ibis expression costs about five times as much to compile and run
# (measured on 400 customers: 142 ms against 685 ms on a loaded machine).
_IN_FORCE_SQL = f"""
SELECT customer_id, channel, status FROM (
    SELECT customer_id, channel, status, row_number() OVER (
        PARTITION BY customer_id, channel ORDER BY {LATEST_FIRST_SQL}
    ) AS _rank
    FROM consent
    WHERE channel IN (SELECT unnest(?::VARCHAR[])) AND customer_id IN (SELECT unnest(?::VARCHAR[]))
      AND coalesce(purpose, ?) = ? AND {VALID_AT_SQL.format(at="?::TIMESTAMPTZ")}
) WHERE _rank = 1
"""


def statuses_in_force(
    ctx: StoreContext,
    wanted: set[tuple[str, str]],
    purpose: str = DEFAULT_PURPOSE,
    *,
    at: datetime | None = None,
) -> dict[tuple[str, str], str]:
    """(channel, customer id) -> the status in force at ``at`` for ``purpose``, for the pairs in
    ``wanted`` that have one (one query for the whole set)."""
    if not wanted or not ctx.warehouse.has_table(CONSENT.name):
        return {}
    channels = sorted({channel for channel, _ in wanted})
    ids = sorted({cid for _, cid in wanted})
    if ctx.warehouse.backend_name == "duckdb":
        rows = ctx.warehouse.fetch(_IN_FORCE_SQL, [channels, ids, DEFAULT_PURPOSE, purpose, moment(at)])
    else:
        rows = consent_in_force(ctx, channels, ids, purpose, at=at).to_pyarrow().to_pylist()
    pairs = ((r["channel"], r["customer_id"], r["status"]) for r in rows)
    return {(channel, cid): status for channel, cid, status in pairs if (channel, cid) in wanted}


def consent_history(ctx: StoreContext, customer_id: str) -> list[ConsentRecord]:
    """Every record of one person, oldest first."""
    ledger = consent_ledger(ctx)
    rows = ledger.filter(ledger.customer_id == customer_id).order_by("recorded_at", "channel", "purpose")
    return [ConsentRecord(**r) for r in rows.to_pyarrow().to_pylist()]


def consent_state(ctx: StoreContext, customer_id: str, *, at: datetime | None = None) -> list[ConsentRecord]:
    """The records in force at ``at`` (default now) for one person (one per channel and purpose)."""
    rows = current_consent(ctx, customer_id, at=at).order_by("channel", "purpose")
    return [ConsentRecord(**r) for r in rows.to_pyarrow().to_pylist()]
