"""Benchmark: segment-of-one lookups (``GET /api/v1/customers/{id}``) through the REST API.

Builds (once, cached in ``.bench-cache/api-<N>/``) a workspace of N generated customers (default
1,000,000) with about three orders and one consent record each, profiled, with one segment;
then starts ``micromarketing serve`` on loopback and sends lookups of random customers from a
bounded number of concurrent clients (keep-alive connections).  Prints p50/p90/p99/max latency
and throughput next to the baseline measured in the same run: the same lookup called in-process
through the facade (``ws.segment_of_one``), i.e. what the API wraps, without HTTP.  It also
prints the CPU time the server spent per request (from /proc): on a machine shared with other
work, latency is that CPU time plus waiting for a core, and the load average says how much waiting.

    .venv/bin/python benchmarks/api_bench.py [--customers 1000000] [--requests 2000]
        [--concurrency 1,2,4] [--server-threads N] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"
TARGET_P99_MS = 20.0
CITIES = np.array(["Lyon", "Paris", "Lille", "Nantes", "Nice", "Rennes", "Brest", "Dijon"])
CATEGORIES = np.array(["running", "outdoor", "home", "books", "garden", "kitchen"])
NAMES = np.array(["Ada", "Ben", "Chloé", "Dan", "Eve", "Femi", "Gus", "Hana"])


def _write_data(out: Path, n: int, seed: int = 7) -> None:
    """Customers, ~3 single-line orders each over two years, one email consent each (Parquet).

    Order lines are written grouped by customer (as the generator makes them), so DuckDB's zone
    maps let a lookup skip most of ``transactions``; time-ordered lines would be scanned whole."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
    pq.write_table(
        pa.table(
            {
                "customer_id": ids,
                "first_name": NAMES[rng.integers(0, len(NAMES), n)],
                "email": np.char.add(np.char.lower(ids), "@example.com"),
                "city": CITIES[rng.integers(0, len(CITIES), n)],
                "country": np.full(n, "FR"),
                "signup_date": pa.array(
                    (np.datetime64("2022-01-01") + rng.integers(0, 700, n)).astype("datetime64[D]")
                ),
            }
        ),
        out / "customers.parquet",
    )
    orders = rng.poisson(2.0, n) + 1
    owner = np.repeat(ids, orders)
    m = len(owner)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    seconds = rng.integers(0, 730 * 86400, m)
    pq.write_table(
        pa.table(
            {
                "order_id": np.char.add("O", np.arange(1, m + 1).astype(str)),
                "line_no": np.ones(m, dtype=np.int64),
                "customer_id": owner,
                "ordered_at": pa.array(
                    [start + timedelta(seconds=int(s)) for s in seconds], type=pa.timestamp("us", tz="UTC")
                ),
                "category": CATEGORIES[rng.integers(0, len(CATEGORIES), m)],
                "amount": np.round(rng.lognormal(3.5, 0.6, m), 2),
                "currency": np.full(m, "EUR"),
                "channel": np.full(m, "online"),
            }
        ),
        out / "transactions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ids,
                "channel": np.full(n, "email"),
                "status": np.where(rng.random(n) < 0.8, "opt_in", "opt_out"),
                "recorded_at": pa.array([start] * n, type=pa.timestamp("us", tz="UTC")),
                "source": np.full(n, "signup"),
            }
        ),
        out / "consent.parquet",
    )


def build(n: int, fresh: bool) -> tuple[Path, float]:
    """The cached workspace of ``n`` customers (built when missing) and the build time (0 if cached)."""
    from micromarketing import Workspace

    root = CACHE / f"api-{n}"
    if fresh and root.exists():
        shutil.rmtree(root)
    if (root / "ws" / "ready").exists():
        return root / "ws", 0.0
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    _write_data(root / "data", n)
    with Workspace.init(root / "ws") as ws:
        for kind in ("customers", "transactions", "consent"):
            ws.ingest(kind, root / "data" / f"{kind}.parquet")
        ws.profile()
        ws.segments.create("loyal", "frequency >= 3")
    (root / "ws" / "ready").write_text("ok")
    return root / "ws", time.perf_counter() - t0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(ms: list[float]) -> dict[str, float]:
    q = np.percentile(np.array(ms), [50, 90, 99])
    return {"p50": q[0], "p90": q[1], "p99": q[2], "max": max(ms)}


def _row(label: str, ms: list[float], seconds: float | None = None) -> str:
    p = _percentiles(ms)
    rate = f"{len(ms) / seconds:8.1f} req/s" if seconds else " " * 14
    return (f"{label:<34} n={len(ms):>5}  p50 {p['p50']:7.2f} ms  p90 {p['p90']:7.2f} ms  "
            f"p99 {p['p99']:7.2f} ms  max {p['max']:7.2f} ms  {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=lambda v: [int(c) for c in v.split(",")], default=[1, 2, 4],
                        help="clients at once; a comma list runs each in turn (default 1,2,4)")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="DuckDB threads of the server ([server] warehouse_threads; default 1, "
                             "0: the workspace's [warehouse] threads)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached workspace")
    args = parser.parse_args()

    from micromarketing import Workspace

    root, built = build(args.customers, args.fresh)
    rng = np.random.default_rng(1)
    ids = [f"C{i:07d}" for i in rng.integers(1, args.customers + 1, args.requests)]
    warm = [f"C{i:07d}" for i in rng.integers(1, args.customers + 1, 100)]  # others, read before timing
    print(f"workspace: {args.customers:,} customers at {root}"
          + (f" (built in {built:.0f} s)" if built else " (cached)"))

    with Workspace.open(root) as ws:
        tx = ws.table("transactions").count().execute()
        print(f"warehouse: {tx:,} order lines; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}")
        key = ws.api_keys.create("viewer", "api_bench").key
        for cid in warm:
            ws.segment_of_one(cid)
        baseline = []
        for cid in ids[: max(50, args.requests // 10)]:
            t0 = time.perf_counter()
            ws.segment_of_one(cid)
            baseline.append(1000 * (time.perf_counter() - t0))

    port = _free_port()
    env = dict(os.environ, MICROMARKETING_SERVER__RATE_LIMIT="0")  # the load is the point: no 429s
    if args.server_threads is not None:
        env["MICROMARKETING_SERVER__WAREHOUSE_THREADS"] = str(args.server_threads)
    server = subprocess.Popen(
        [sys.executable, "-c", "from micromarketing.cli.main import app; app()", "serve",
         "--port", str(port), "-w", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            for cid in warm:  # opens the warehouse and reads as much as the baseline's warm-up
                client.get(f"/api/v1/customers/{cid}").raise_for_status()

        results = [(c, _load(base, headers, ids, c, server.pid)) for c in args.concurrency]
    finally:
        server.terminate()
        server.wait(timeout=30)

    names = {None: "1 (server default)", 0: "workspace default"}
    threads = names.get(args.server_threads, args.server_threads)
    print(_row("baseline: ws.segment_of_one", baseline))
    for c, (latencies, errors, wall, server_cpu_ms) in results:
        p99 = _percentiles(latencies)["p99"]
        print(_row(f"API GET /customers/{{id}} (c={c})", latencies, wall))
        print(f"  errors: {len(errors)} {sorted(set(errors)) if errors else ''}; server CPU per request: "
              f"{server_cpu_ms:.2f} ms (DuckDB threads: {threads}); p50 / baseline p50: "
              f"{_percentiles(latencies)['p50'] / statistics.median(baseline):.2f}x; "
              f"target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if p99 <= TARGET_P99_MS else 'NOT met'} "
              f"({p99:.1f} ms)")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def _load(
    base: str, headers: dict[str, str], ids: list[str], concurrency: int, server_pid: int
) -> tuple[list[float], list[int], float, float]:
    """Look up ``ids`` from ``concurrency`` keep-alive clients, each sending its next request as
    soon as the last one is answered: latencies (ms), error statuses, wall seconds and the
    server's CPU milliseconds per request."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    queue = iter(ids)

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                with lock:
                    cid = next(queue, None)
                if cid is None:
                    return
                t0 = time.perf_counter()
                r = client.get(f"/api/v1/customers/{cid}")
                elapsed = 1000 * (time.perf_counter() - t0)
                with lock:
                    if r.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu0, t0 = _cpu_seconds(server_pid), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu_ms = 1000 * (_cpu_seconds(server_pid) - cpu0) / max(1, len(latencies) + len(errors))
    return latencies, errors, wall, cpu_ms


if __name__ == "__main__":
    main()
