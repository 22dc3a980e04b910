"""The outbox on a real SQLite operations store: leases, takeover, transitions, ledger, counts,
campaign completion and the suppression import."""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from micromarketing.campaigns import outbox
from micromarketing.campaigns.outbox import Outcome, address_hash
from micromarketing.channels import message_key
from micromarketing.config import RetryPolicy
from micromarketing.store.models import Campaign, DeliveryAttempt, OutboxMessage, Suppression

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
RETRY = RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=600)


def queue(ws, n: int, *, campaign: str | None = "spring", start: int = 0, **values) -> list[int]:
    """Insert ``n`` pending outbox rows (customers c{start}…) and return their ids."""
    with ws.ops.session() as session:
        campaign_id = None
        if campaign is not None:
            found = session.scalar(select(Campaign).where(Campaign.name == campaign))
            if found is None:
                found = Campaign(name=campaign, status="running")
                session.add(found)
                session.flush()
            campaign_id = found.id
        rows = []
        for i in range(start, start + n):
            key = message_key(str(campaign), f"c{i}", "email")
            rows.append(
                OutboxMessage(
                    campaign_id=campaign_id,
                    idempotency_key=key,
                    message_id=key,
                    customer_id=f"c{i}",
                    channel="email",
                    fields={"email": f"c{i}@example.com"},
                    **{"not_before": NOW - timedelta(minutes=1), **values},
                )
            )
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def row(ws, outbox_id: int) -> OutboxMessage:
    with ws.ops.session() as session:
        return session.get(OutboxMessage, outbox_id)


def record(ws, message, outcome, worker="w1", now=NOW, rng=None):
    with outbox.write_transaction(ws.context) as conn:
        return outbox.record(
            conn, message, outcome, worker=worker, retry=RETRY, rng=rng or random.Random(1), now=now
        )


def test_claim_leases_only_due_rows_highest_priority_first(workspace):
    low = queue(workspace, 3)
    high = queue(workspace, 2, start=10, priority=5)
    later = queue(workspace, 2, start=20, not_before=NOW + timedelta(hours=1))
    claimed = outbox.claim(workspace.context, "w1", 10, LEASE, NOW)
    assert [m.id for m in claimed] == high + low
    assert all(m.state == "sending" and m.lease_owner == "w1" for m in claimed)
    assert outbox.utc(claimed[0].lease_expires_at) == NOW + LEASE
    assert outbox.claim(workspace.context, "w2", 10, LEASE, NOW) == []  # leased, not due
    assert row(workspace, later[0]).state == "pending"
    for m in claimed:
        record(workspace, m, Outcome("sent", code=250))
    assert [m.id for m in outbox.claim(workspace.context, "w2", 10, LEASE, NOW + timedelta(hours=2))] == later


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_record(workspace):
    [only] = queue(workspace, 1)
    [first] = outbox.claim(workspace.context, "dead", 5, LEASE, NOW)
    assert outbox.claim(workspace.context, "w2", 5, LEASE, NOW + LEASE - timedelta(seconds=1)) == []
    [taken] = outbox.claim(workspace.context, "w2", 5, LEASE, NOW + LEASE + timedelta(seconds=1))
    assert taken.id == only and taken.lease_owner == "w2"
    late = record(workspace, first, Outcome("sent", code=250), worker="dead")
    assert not late.owned
    assert row(workspace, only).state == "sending"  # still the new owner's
    assert record(workspace, taken, Outcome("sent", code=250), worker="w2").owned
    assert row(workspace, only).state == "sent"
    with workspace.ops.session() as session:  # both sends are in the ledger
        assert session.scalars(select(DeliveryAttempt.worker).order_by(DeliveryAttempt.id)).all() == [
            "dead",
            "w2",
        ]


def test_renewing_a_lease_keeps_the_rows_from_being_taken_over(workspace):
    queue(workspace, 2)
    claimed = outbox.claim(workspace.context, "w1", 5, LEASE, NOW)
    assert outbox.renew_lease(workspace.context, "w1", [m.id for m in claimed], LEASE, NOW + LEASE / 2) == 2
    assert outbox.renew_lease(workspace.context, "other", [m.id for m in claimed], LEASE, NOW) == 0
    assert outbox.claim(workspace.context, "w2", 5, LEASE, NOW + LEASE + timedelta(seconds=1)) == []


def test_concurrent_workers_claim_every_row_exactly_once(workspace):
    queue(workspace, 1500)
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        mine = claims.setdefault(name, [])
        try:
            while batch := outbox.claim(workspace.context, name, 25, LEASE):
                mine += [m.id for m in batch]
        except BaseException as exc:  # surfaced below: "database is locked" would land here
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everything = [i for ids in claims.values() for i in ids]
    assert len(everything) == 1500 and len(set(everything)) == 1500
    assert sum(1 for ids in claims.values() if ids) >= 2  # the work was actually shared


CLAIMER = """
import sys, time
from datetime import timedelta
from pathlib import Path
from micromarketing.campaigns import outbox
from micromarketing.config import load_settings
from micromarketing.store.context import StoreContext
root, gate = Path(sys.argv[1]), Path(sys.argv[2])
ctx = StoreContext.connect(root, load_settings(root))
outbox.state_counts(ctx)  # connected: imports and the first query are behind us
Path(sys.argv[4]).touch()
while not gate.exists():
    time.sleep(0.01)
ids = []
while batch := outbox.claim(ctx, sys.argv[3], 20, timedelta(seconds=60)):
    ids += [m.id for m in batch]
    time.sleep(0.005)  # a worker sends its batch before it claims the next (on an idle machine one
    # process drained all 50 batches before the other saw the gate)
print(" ".join(map(str, ids)))
"""


@pytest.mark.slow  # two interpreters importing the package: ~60 s on the loaded 2-core machine
def test_concurrent_worker_processes_claim_every_row_exactly_once(workspace):
    import subprocess
    import sys
    import time

    queue(workspace, 1000)
    gate = workspace.root / "go"
    ready = [workspace.root / f"ready{i}" for i in range(2)]  # both start together behind the gate
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(workspace.root), str(gate), f"p{i}", str(ready[i])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready):
        assert all(p.poll() is None for p in procs), [p.stderr.read().decode() for p in procs]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the claimers did not start"
        time.sleep(0.05)
    gate.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode() for _, err in outputs]
    claimed = [[int(i) for i in out.split()] for out, _ in outputs]
    everything = claimed[0] + claimed[1]
    assert len(everything) == 1000 and len(set(everything)) == 1000
    assert all(claimed)  # both processes got work


def test_transitions_and_the_ledger(workspace):
    ids = queue(workspace, 5)
    ok, soft, hard, skip, later = outbox.claim(workspace.context, "w1", 5, LEASE, NOW)
    record(workspace, ok, Outcome("sent", code=250))
    record(workspace, soft, Outcome("temporary_failure", "451 greylisted", 451))
    record(
        workspace,
        hard,
        Outcome("permanent_failure", "550 no such user", 550, suppress_address="c2@example.com"),
    )
    record(workspace, skip, Outcome("skipped", "no consent"))
    record(workspace, later, Outcome("deferred", "quiet hours", not_before=NOW + timedelta(hours=8)))
    states = {i: row(workspace, i) for i in ids}
    assert [states[i].state for i in ids] == ["sent", "deferred", "failed", "skipped", "deferred"]
    assert [states[i].attempts for i in ids] == [1, 1, 1, 0, 0]
    assert NOW <= outbox.utc(states[ids[1]].not_before) <= NOW + timedelta(seconds=60)  # attempt 1: ≤ base
    assert outbox.utc(states[ids[4]].not_before) == NOW + timedelta(hours=8)
    assert states[ids[3]].reason == "no consent" and states[ids[2]].reason == "550 no such user"
    assert all(states[i].lease_owner is None for i in ids)
    with workspace.ops.session() as session:
        [bounce] = session.scalars(select(Suppression)).all()
    assert (bounce.customer_id, bounce.kind, bounce.channel) == ("c2", "hard_bounce", "email")
    assert bounce.subject_hash == address_hash("email", " C2@Example.com ")
    assert outbox.state_counts(workspace.context) == {
        "pending": 0,
        "sending": 0,
        "sent": 1,
        "deferred": 2,
        "failed": 1,
        "skipped": 1,
    }
    ledger = outbox.customer_ledger(workspace.context, "c1")
    [message] = ledger.messages
    assert (message.campaign, message.state, message.message_id) == (
        "spring",
        "deferred",
        message_key("spring", "c1", "email"),
    )
    assert [(a.attempt, a.status, a.code) for a in message.attempts] == [(1, "temporary_failure", 451)]
    assert outbox.customer_ledger(workspace.context, "nobody").messages == []


def test_a_temporary_failure_fails_with_its_reason_once_attempts_are_used_up(workspace):
    [only] = queue(workspace, 1)
    at = NOW
    for attempt in range(1, RETRY.max_attempts + 1):
        [m] = outbox.claim(workspace.context, "w1", 1, LEASE, at)
        assert m.attempts == attempt - 1
        done = record(workspace, m, Outcome("temporary_failure", "421 try later", 421), now=at)
        at = outbox.utc(row(workspace, only).not_before) + timedelta(seconds=1)
    assert done.state == "failed"
    final = row(workspace, only)
    assert final.state == "failed" and final.attempts == 3
    assert final.reason == "gave up after 3 attempts: 421 try later"
    statuses = [a.status for a in outbox.customer_ledger(workspace.context, "c0").messages[0].attempts]
    assert statuses == ["temporary_failure"] * 3


def test_a_campaign_is_finished_only_when_nothing_is_pending_sending_or_deferred(workspace):
    queue(workspace, 3)
    with workspace.ops.session() as session:
        campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "spring"))
    a, b, c = outbox.claim(workspace.context, "w1", 3, LEASE, NOW)
    record(workspace, a, Outcome("sent", code=250))
    record(workspace, b, Outcome("temporary_failure", "451", 451))
    assert outbox.finish_campaigns(workspace.context, [campaign_id], NOW) == []  # b deferred, c sending
    record(workspace, c, Outcome("permanent_failure", "550", 550))
    assert outbox.finish_campaigns(workspace.context, [campaign_id], NOW) == []  # b still retrying
    [b] = outbox.claim(workspace.context, "w1", 3, LEASE, NOW + timedelta(hours=1))
    record(workspace, b, Outcome("sent", code=250))
    assert outbox.finish_campaigns(workspace.context, [campaign_id, None], NOW) == [campaign_id]
    assert outbox.finish_campaigns(workspace.context, [campaign_id], NOW) == []  # already finished
    with workspace.ops.session() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign.status == "finished" and campaign.finished_at is not None
    assert outbox.state_counts(workspace.context, campaign_id)["sent"] == 2


# -- suppression import ----------------------------------------------------------------------
def test_suppression_import_stores_hashed_addresses_with_known_customers(workspace, tmp_path):
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,email,country\nk1,Known@Shop.example,FR\nk2,other@shop.example,FR\n")
    workspace.ingest("customers", customers)
    export = tmp_path / "bounces.csv"
    export.write_text(
        "Email;Type;Reason\n"
        "known@shop.example;Bounce;550 5.1.1 user unknown\n"
        "stranger@elsewhere.example;Complaint;spam report\n"
        "not-an-address;Bounce;\n"
    )
    result = workspace.delivery.suppress_import(export)
    assert (result.read, result.added, result.already_suppressed, result.matched_customers) == (2, 2, 0, 1)
    assert result.by_kind == {"hard_bounce": 1, "complaint": 1}
    assert result.rejected == {4: "no valid address ('not-an-address')"}
    with workspace.ops.session() as session:
        stored = {s.subject_hash: s for s in session.scalars(select(Suppression))}
    known = stored[address_hash("email", "known@shop.example")]
    assert (known.customer_id, known.kind, known.reason) == ("k1", "hard_bounce", "550 5.1.1 user unknown")
    assert stored[address_hash("email", "stranger@elsewhere.example")].customer_id is None
    again = workspace.delivery.suppress_import(export)
    assert (again.added, again.already_suppressed) == (0, 2)


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+", min_size=1, max_size=12)
_address = st.builds(lambda a, b: f"{a}@{b}.example", _local, st.sampled_from(["mail", "shop", "x-y"]))
_kind = st.sampled_from(["bounce", "hard", "complaint", "spam", "unsubscribed", "5.1.1", "weird"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_address, _kind, st.booleans()), max_size=15))
def test_suppression_import_of_generated_exports_is_idempotent(workspace, tmp_path, rows):
    with workspace.ops.session() as session:
        session.execute(delete(Suppression))
    export = tmp_path / "export.jsonl"
    lines = [json.dumps({"email_address": a.upper() if shout else a, "event": k}) for a, k, shout in rows]
    export.write_text("\n".join(lines) + "\n" if lines else "")
    if not lines:
        export.write_text("email,type\n")
    first = workspace.delivery.suppress_import(export)
    kinds = {
        "bounce": "hard_bounce",
        "hard": "hard_bounce",
        "5.1.1": "hard_bounce",
        "complaint": "complaint",
        "spam": "complaint",
        "unsubscribed": "unsubscribe",
        "weird": "manual",
    }
    distinct = {(a.lower(), kinds[k]) for a, k, _ in rows}
    assert first.read == len(rows) and first.added == len(distinct)
    assert first.added + first.already_suppressed == len(rows)
    assert Counter(first.by_kind) == Counter(kinds[k] for _, k, _ in rows)
    second = workspace.delivery.suppress_import(export)
    assert second.added == 0 and second.already_suppressed == len(rows)
    with workspace.ops.session() as session:
        hashes = set(session.scalars(select(Suppression.subject_hash)))
    assert hashes == {address_hash("email", a) for a, _ in distinct}


@pytest.mark.parametrize("address", ["A@B.example", " a@b.example", "a@b.EXAMPLE "])
def test_address_hash_ignores_case_and_surrounding_space(address):
    assert address_hash("email", address) == address_hash("email", "a@b.example")
    assert address_hash("sms", address) != address_hash("email", address)
