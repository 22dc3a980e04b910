"""Time `profile` on 1M customers / ~10M order lines against two baselines, in one run.

Baselines (same RFM figures: recency, frequency = distinct orders, monetary, per customer):
  (a) pandas: a straightforward groupby over the order lines read from Parquet;
  (b) one hand-written DuckDB SQL query over the warehouse's transactions table.
The profile computes much more (scores, named segments, top category, preferred channel, age,
nearest store, H3 cell).  Each method runs in its own subprocess so its peak memory is its own.

``profile`` as of the day after the newest row reads the per-customer rollups the warehouse
maintains on every write; ``profile_past`` (as of six months earlier) shows the other path,
where the same rollup expressions run over the order lines and events before that date.
``stores_write`` times re-ingesting the stores file, which rebuilds every customer's nearest
store (the customers × stores cross join the profile no longer runs).

    .venv/bin/python benchmarks/profile_bench.py [--customers 1000000] [--repeat 3]

Data is generated once and cached under .bench-cache/.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 7, 1)  # the day after the newest generated order and event
PAST_AS_OF = date(2026, 1, 1)


def prepare(customers: int) -> Path:
    from micromarketing import Workspace
    from micromarketing.datasets import generate

    base = ROOT / ".bench-cache" / f"profile-{customers}"
    data, ws_dir = base / "data", base / "workspace"
    if not (data / "transactions.parquet").exists():
        t = time.perf_counter()
        generate(data, customers=customers, seed=1, fmt="parquet")
        print(f"generated {customers:,} customers in {time.perf_counter() - t:.1f}s", flush=True)
    if not (ws_dir / "micromarketing.toml").exists():
        t = time.perf_counter()
        with Workspace.init(ws_dir) as ws:
            for kind in ("stores", "customers", "transactions", "events"):
                for path in sorted(data.glob(f"{kind}.*")):
                    result = ws.ingest(kind, path)
                    print(f"ingested {path.name}: {result.accepted:,} rows", flush=True)
        print(f"ingest took {time.perf_counter() - t:.1f}s", flush=True)
    return base


def run_method(method: str, base: Path, repeat: int) -> dict[str, float]:
    """Runs inside a subprocess: time one method `repeat` times; report best, median, peak RSS."""
    times: list[float] = []
    if method in {"profile_warm", "profile_past", "stores_write"}:
        from micromarketing import Workspace

        ws = Workspace.open(base / "workspace")
        ws.warehouse.ensure_schema()  # builds missing rollups (a cache made by an older version)
        for _ in range(repeat):
            t = time.perf_counter()
            if method == "stores_write":  # rewrites every store: the nearest store of everyone
                ws.ingest("stores", base / "data" / "stores.parquet")
            else:
                ws.profile(as_of=PAST_AS_OF if method == "profile_past" else AS_OF)
            times.append(time.perf_counter() - t)
        ws.close()
    elif method == "duckdb_sql":
        import duckdb

        con = duckdb.connect(str(base / "workspace" / "warehouse.duckdb"), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        sql = f"""
            CREATE OR REPLACE TEMP TABLE rfm AS
            SELECT customer_id,
                   DATE '{AS_OF}' - max(ordered_at)::DATE AS recency_days,
                   count(DISTINCT order_id) AS frequency,
                   sum(amount) AS monetary
            FROM transactions
            WHERE ordered_at < TIMESTAMPTZ '{AS_OF} 00:00:00+00'
            GROUP BY customer_id"""
        for _ in range(repeat):
            t = time.perf_counter()
            con.execute(sql)
            times.append(time.perf_counter() - t)
    elif method == "pandas":
        import pandas as pd

        t = time.perf_counter()
        lines = pd.read_parquet(
            base / "data" / "transactions.parquet",
            columns=["customer_id", "order_id", "ordered_at", "amount"],
        )
        lines["ordered_at"] = pd.to_datetime(lines["ordered_at"], utc=True)
        load = time.perf_counter() - t
        cutoff = pd.Timestamp(AS_OF, tz="UTC")
        for _ in range(repeat):
            t = time.perf_counter()
            recent = lines[lines["ordered_at"] < cutoff]
            rfm = recent.groupby("customer_id").agg(
                last=("ordered_at", "max"), frequency=("order_id", "nunique"), monetary=("amount", "sum")
            )
            rfm["recency_days"] = (cutoff - rfm["last"]).dt.days
            times.append(time.perf_counter() - t)
        print(json.dumps({"load_s": load}), file=sys.stderr)
    else:
        raise SystemExit(f"unknown method {method}")
    peak_mb = _peak_rss_mb()
    times.sort()
    return {"best_s": times[0], "median_s": times[len(times) // 2], "peak_mb": peak_mb}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM starts afresh at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = ROOT / ".bench-cache" / f"profile-{args.customers}"
    if args.method:
        print(json.dumps(run_method(args.method, base, args.repeat)))
        return

    prepare(args.customers)
    results = {}
    for method in ("duckdb_sql", "pandas", "profile_warm", "profile_past", "stores_write"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--customers",
                str(args.customers),
                "--repeat",
                str(args.repeat),
                "--method",
                method,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        if out.stderr.strip():
            print(f"{method}: {out.stderr.strip().splitlines()[-1]}")
    print(f"\nprofile benchmark: {args.customers:,} customers, as of {AS_OF}, best of {args.repeat}")
    print(f"{'method':<38}{'best s':>9}{'median s':>10}{'peak MB':>10}")
    labels = {
        "duckdb_sql": "hand-written DuckDB SQL (RFM only)",
        "pandas": "pandas groupby (RFM only)",
        "profile_warm": "micromarketing profile (full)",
        "profile_past": f"  … as of {PAST_AS_OF} (raw rows)",
        "stores_write": "ingest stores.parquet (nearest store)",
    }
    for method, r in results.items():
        print(f"{labels[method]:<38}{r['best_s']:>9.2f}{r['median_s']:>10.2f}{r['peak_mb']:>10.0f}")
    sql, pandas_t = results["duckdb_sql"]["best_s"], results["pandas"]["best_s"]
    for method in ("profile_warm", "profile_past"):
        p = results[method]["best_s"]
        label = labels[method].strip()
        print(f"{label}: {p / sql:.2f}x the hand-written query, {pandas_t / p:.2f}x faster than pandas")


if __name__ == "__main__":
    main()
