"""Rule-segment benchmark: count and materialise a 5-condition rule over 1M profiles (DuckDB).

Prints, for the same query:
  * hand-written DuckDB SQL (the baseline, run on the same connection),
  * the rule text through parse + compile + execute (fresh Segments each time: it also looks up
    the tables and the profiles' as-of date), and with a warm catalog,
  * materialising the segment (members written to ``segment_members``).

Targets: count from rule text ≤ 50 ms; materialise ≤ 2 s.

    .venv/bin/python benchmarks/segment_bench.py [--profiles 1000000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from micromarketing.segments import Segments, parse
from micromarketing.workspace import Workspace

RULE = (
    "rfm_segment in ('champions', 'loyal', 'potential_loyalists') and recency_days <= 60 "
    "and frequency >= 3 and monetary between 200 and 5000 and age_band = '25-34'"
)
HAND_SQL = (
    "SELECT count(*) FROM profiles WHERE rfm_segment IN ('champions', 'loyal', 'potential_loyalists') "
    "AND recency_days <= 60 AND frequency >= 3 AND monetary BETWEEN 200 AND 5000 AND age_band = '25-34'"
)
AS_OF = date(2024, 7, 1)


def build(root: Path, n: int) -> Workspace:
    """A workspace with ``n`` synthetic customers and profiles, generated inside DuckDB."""
    ws = Workspace.init(root)
    segments = [
        "'champions'",
        "'loyal'",
        "'potential_loyalists'",
        "'new'",
        "'promising'",
        "'need_attention'",
        "'at_risk'",
        "'cannot_lose'",
        "'hibernating'",
        "'lost'",
        "'prospects'",
    ]
    bands = ["'18-24'", "'25-34'", "'35-44'", "'45-54'", "'55-64'", "'65+'"]
    ws.warehouse.raw_sql(f"""
        CREATE OR REPLACE TABLE profiles AS
        SELECT printf('C%08d', i) AS customer_id, DATE '{AS_OF}' AS as_of,
               CAST(hash(i, 1) % 730 AS BIGINT) AS recency_days,
               CAST(1 + hash(i, 2) % 20 AS BIGINT) AS frequency,
               round((hash(i, 3) % 800000) / 100.0, 2) AS monetary,
               [{", ".join(segments)}][CAST(1 + hash(i, 4) % {len(segments)} AS BIGINT)] AS rfm_segment,
               CAST(18 + hash(i, 5) % 70 AS BIGINT) AS age,
               [{", ".join(bands)}][CAST(1 + hash(i, 6) % {len(bands)} AS BIGINT)] AS age_band,
               round((hash(i, 7) % 200000) / 100.0, 2) AS clv
        FROM range({n}) t(i)
    """)
    ws.warehouse.raw_sql(f"""
        INSERT INTO customers (customer_id, city, postcode, lat, lon)
        SELECT printf('C%08d', i), ['Paris', 'Lyon', 'Lille', 'Nice'][CAST(1 + hash(i, 8) % 4 AS BIGINT)],
               printf('%05d', hash(i, 9) % 99999), 43 + (hash(i, 10) % 700) / 100.0,
               -1 + (hash(i, 11) % 800) / 100.0
        FROM range({n}) t(i)
    """)
    return ws


def timed(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="segment-bench-"))
    try:
        start = time.perf_counter()
        ws = build(tmp / "ws", args.profiles)
        print(f"built {args.profiles:,} profiles + customers in {time.perf_counter() - start:.1f} s")
        raw = ws.warehouse.con.con  # the DuckDB connection, for the hand-written baseline

        hand_ms, hand_n = timed(lambda: raw.execute(HAND_SQL).fetchone()[0], args.repeat)
        parse_ms, _ = timed(lambda: parse(RULE), args.repeat)

        def from_text() -> int:
            return int(Segments(ws).compile(RULE).matches().count().execute())

        rule_ms, rule_n = timed(from_text, args.repeat)
        warm = Segments(ws)
        warm_ms, _ = timed(lambda: int(warm.compile(RULE).matches().count().execute()), args.repeat)
        assert rule_n == hand_n, (rule_n, hand_n)

        seg = Segments(ws)
        start = time.perf_counter()
        result = seg.create("bench", RULE, as_of=AS_OF)
        create_s = time.perf_counter() - start
        start = time.perf_counter()
        seg.materialise("bench", AS_OF)
        mat_s = time.perf_counter() - start

        print(f"rule: {RULE}")
        print(f"members: {hand_n:,} of {args.profiles:,}")
        print(f"hand-written DuckDB SQL count      : {hand_ms:7.1f} ms  (baseline)")
        print(f"rule text: parse only              : {parse_ms:7.3f} ms")
        print(f"rule text: parse+compile+execute   : {rule_ms:7.1f} ms  (target <= 50 ms; fresh Segments)")
        print(f"rule text, warm catalog            : {warm_ms:7.1f} ms")
        print(f"create (compile+guards+materialise): {create_s * 1000:7.0f} ms  ({result.size:,} members)")
        print(f"re-materialise                     : {mat_s * 1000:7.0f} ms  (target <= 2000 ms)")
        ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
