"""Retention: purge what the ``[privacy]`` rules say is kept too long (``privacy retain``).

* ``events_max_age_months`` / ``transactions_max_age_months``: rows older than the cutoff go
  (the per-customer rollups of those tables are refreshed in the same transaction);
* ``inactive_customer_years``: customers with no order, event, consent record or signup since
  the cutoff are erased like ``privacy forget`` does, without a suppression entry;
* ``quarantine_max_age_days``: quarantine files (rejected rows, with their raw values) older than
  that are deleted.

``dry_run`` counts without changing anything.  Months are calendar months (dateutil-free: the
day is clamped to the target month's length).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import ibis
from pydantic import BaseModel

from micromarketing.privacy.erasure import Person, erase_people

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext


class RetentionReport(BaseModel):
    """What a retention run purged (or, dry, would purge), rule by rule."""

    dry_run: bool
    now: datetime
    cutoffs: dict[str, datetime]
    purged: dict[str, int]  # rule -> rows / customers / files
    files: list[str]  # quarantine files deleted (relative to the workspace)


def months_before(moment: datetime, months: int) -> datetime:
    """``moment`` minus ``months`` calendar months (31 March - 1 month = 28/29 February)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def retain(
    ctx: StoreContext, *, dry_run: bool = False, now: datetime | None = None, actor: str = "cli"
) -> RetentionReport:
    """Apply the ``[privacy]`` retention rules as of ``now`` (default: the current time, UTC)."""
    rules = ctx.settings.privacy
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tables = ctx.warehouse.base_tables()
    cutoffs: dict[str, datetime] = {}
    purged: dict[str, int] = {}
    for rule, table, column, months in (
        ("events", "events", "occurred_at", rules.events_max_age_months),
        ("transactions", "transactions", "ordered_at", rules.transactions_max_age_months),
    ):
        if months is None or table not in tables:
            continue
        cutoffs[rule] = months_before(now, months)
        purged[rule] = ctx.warehouse.delete_before(table, column, cutoffs[rule], dry_run=dry_run)
    if rules.inactive_customer_years is not None and "customers" in tables:
        cutoffs["inactive_customers"] = months_before(now, 12 * rules.inactive_customer_years)
        people = _inactive(ctx, tables, cutoffs["inactive_customers"])
        purged["inactive_customers"] = len(people)
        if people and not dry_run:
            erase_people(ctx, people, label="erased:retention")
    files: list[str] = []
    if rules.quarantine_max_age_days is not None:
        cutoffs["quarantine_files"] = now - timedelta(days=rules.quarantine_max_age_days)
        folder = ctx.root / ctx.settings.ingest.quarantine_dir
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.is_file() else None
            if modified is not None and modified < cutoffs["quarantine_files"]:
                files.append(str(path.relative_to(ctx.root)))
                if not dry_run:
                    path.unlink()
        purged["quarantine_files"] = len(files)
    report = RetentionReport(dry_run=dry_run, now=now, cutoffs=cutoffs, purged=purged, files=files)
    if not dry_run:
        ctx.audit("privacy.retain", "workspace",
                  {"purged": purged, "cutoffs": {k: v.isoformat() for k, v in cutoffs.items()}}, actor=actor)
    return report


def _inactive(ctx: StoreContext, tables: dict[str, list[str]], cutoff: datetime) -> list[Person]:
    """Customers whose latest activity (order, event, consent record, signup) is before ``cutoff``."""
    customers = ctx.table("customers")
    def dated_ids(t, at):  # type: ignore[no-untyped-def]  # the key columns differ in nullability
        return t.select(customer_id=t.customer_id.cast("string"), at=at.cast("timestamp('UTC')"))

    activity = [dated_ids(customers, customers.signup_date)]
    dated = (("transactions", "ordered_at"), ("events", "occurred_at"), ("consent", "recorded_at"))
    for table, column in dated:
        if table in tables:
            t = ctx.table(table)
            activity.append(dated_ids(t, t[column]))
    union = ibis.union(*activity)
    latest = union.group_by("customer_id").aggregate(last=union.at.max())
    stale = customers.join(latest, "customer_id").filter(
        lambda t: t.last < ibis.literal(cutoff, type="timestamp('UTC')"))
    people = []
    columns = ("customer_id", "email", "phone", "first_name", "last_name")
    for row in stale.select(*columns).to_pyarrow().to_pylist():
        person = Person(customer_id=row["customer_id"])
        person.emails |= {row["email"]} if row["email"] else set()
        person.phones |= {row["phone"]} if row["phone"] else set()
        full = " ".join(str(row[k]) for k in ("first_name", "last_name") if row[k])
        person.names |= {full} if full else set()
        people.append(person)
    return people
