"""Benchmark of ``campaign run --no-deliver``: assignment, contact policy and outbox rows for a
generated segment of N members (target: 1M members in at most 60 s on 2 cores).

Builds a workspace with N customers (email, time zone, email consent for 90 %), stores them as
a discovered segment, then times ``ws.campaigns.run`` of a two-variant campaign with a 10 %
control group (N assignments, about 0.9 N outbox rows, one SQLite transaction).  The baseline,
measured in the same run on the same rows, is the straightforward ORM path: one
``OutboxMessage`` object per message added to the session (timed on a slice and extrapolated).

    .venv/bin/python benchmarks/campaign_run_bench.py [--members 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select

from micromarketing import Workspace
from micromarketing.store.models import Assignment, OutboxMessage

ZONES = np.array(["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"], dtype=object)
CAMPAIGN = """\
name: bench
control_share: 0.1
segments:
  - segment: everyone
    variants:
      - {name: a, template: hello, channel: email, share: 0.5}
      - {name: b, template: hello, channel: email, share: 0.5}
"""


def build(root: Path, n: int) -> Workspace:
    ws = Workspace.init(root)
    ids = np.char.add("c", np.arange(n).astype(str)).astype(object)
    ws.warehouse.upsert(
        "customers",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "first_name": np.where(np.arange(n) % 7 == 0, None, "Ada").astype(object),
                    "email": np.char.add(ids.astype(str), "@example.com").astype(object),
                    "city": np.where(np.arange(n) % 2 == 0, "Lyon", "Paris").astype(object),
                    "timezone": ZONES[np.arange(n) % len(ZONES)],
                }
            )
        ),
    )
    consented = ids[np.arange(n) % 10 != 0]
    ws.warehouse.upsert(
        "consent",
        ibis.memtable(
            pd.DataFrame(
                {
                    "customer_id": consented,
                    "channel": "email",
                    "status": "opt_in",
                    "recorded_at": pd.Timestamp("2024-01-01", tz="UTC"),
                    "source": "bench",
                    "purpose": "marketing",
                }
            )
        ),
    )
    ws.segments.save_discovered("everyone", ids.tolist(), as_of=date(2024, 6, 1))
    ws.templates.add(
        "hello",
        {
            "subject": "Hello {{ first_name | default('there') }}",
            "text": "Hello {{ first_name | default('there') }} from {{ city }}\n{{ unsubscribe_url }}",
        },
    )
    return ws


def orm_baseline(ws: Workspace, rows: list[dict]) -> float:
    """Seconds to add ``rows`` as ORM objects one by one and commit (rolled back afterwards)."""
    start = time.perf_counter()
    with ws.ops.session() as s:
        for row in rows:
            s.add(OutboxMessage(**{**row, "idempotency_key": "orm-" + row["idempotency_key"]}))
        s.flush()
        elapsed = time.perf_counter() - start
        s.rollback()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--baseline-slice", type=int, default=20_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="campaign-bench-"))
    try:
        t = time.perf_counter()
        ws = build(tmp / "ws", args.members)
        print(f"workspace with {args.members:,} members built in {time.perf_counter() - t:.1f} s")
        spec = tmp / "bench.yaml"
        spec.write_text(CAMPAIGN)
        load = os.getloadavg()[0]
        t, cpu = time.perf_counter(), time.process_time()
        result = ws.campaigns.run(spec)
        seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
        with ws.ops.session() as s:
            assignments = s.scalar(select(func.count()).select_from(Assignment))
            messages = s.scalar(select(func.count()).select_from(OutboxMessage))
            sample = [
                {c.name: getattr(m, c.name) for c in OutboxMessage.__table__.columns if c.name != "id"}
                for m in s.scalars(select(OutboxMessage).limit(args.baseline_slice))
            ]
        print(
            f"campaign run --no-deliver: {seconds:.1f} s for {args.members:,} members "
            f"({assignments:,} assignments, {messages:,} outbox rows: {result.pending:,} pending, "
            f"{result.deferred:,} deferred by quiet hours, {result.skipped:,} skipped) — "
            f"{args.members / seconds:,.0f} members/s; target 1M in 60 s: "
            f"{'met' if seconds * 1_000_000 / args.members <= 60 else 'missed'} "
            f"(1M extrapolated: {seconds * 1_000_000 / args.members:.1f} s)"
        )
        print(
            f"  CPU time of this process {cpu_seconds:.1f} s; load average {load:.1f} on "
            f"{os.cpu_count()} cores when it started (other work on the machine stretches the wall time)"
        )
        t = time.perf_counter()
        again = ws.campaigns.run(spec)
        print(f"re-run of the same file: {time.perf_counter() - t:.1f} s, {again.message}")
        orm = orm_baseline(ws, sample)
        per_row = orm / len(sample)
        bulk_per_row = seconds / max(messages + assignments, 1)
        print(
            f"baseline (ORM objects one by one, outbox rows only): {per_row * 1e6:.0f} µs/row on "
            f"{len(sample):,} rows → {per_row * messages:.1f} s for the {messages:,} outbox rows alone; "
            f"the whole run spends {bulk_per_row * 1e6:.0f} µs per row written"
        )
        with ws.ops.session() as s:
            s.execute(delete(OutboxMessage).where(OutboxMessage.idempotency_key.like("orm-%")))
        ws.close()
        print(f"finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
