"""Ingest, profile and a segment count on DuckDB, Spark local[2] and a standalone Spark cluster.

DuckDB is the baseline, measured in the same run on the same generated Parquet files (default
1M customers / ~12M order lines).  Each engine runs in its own subprocess (one JVM per driver).
The standalone cluster is a master and one 2-core worker on 127.0.0.1 started from the pip
``pyspark``.  Every stage is also timed on a quarter of the customers, which splits each
engine's time into a fixed cost and a per-customer cost; from those the script estimates where
Spark on a cluster of C cores would overtake DuckDB on this 2-core machine (assuming Spark's
per-customer cost divides by the cores, which is the best case).

    .venv/bin/python benchmarks/spark_bench.py [--customers 1000000] [--engines duckdb,local,cluster]

Data is generated once and cached under .bench-cache/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 7, 1)
KINDS = ("stores", "customers", "transactions", "events")
RULE = "frequency >= 3 and days_since(last_order_at) < 180"
STAGES = ("start", "ingest", "profile", "segment_count")
CORES = (2, 8, 32, 128)


def prepare(customers: int) -> Path:
    from micromarketing.datasets import generate

    data = ROOT / ".bench-cache" / f"spark-{customers}"
    if not (data / "transactions.parquet").exists():
        t = time.perf_counter()
        generate(data, customers=customers, seed=1, fmt="parquet")
        print(f"generated {customers:,} customers in {time.perf_counter() - t:.1f}s", flush=True)
    return data


def run_engine(engine: str, master: str, data: Path) -> dict[str, float]:
    """Inside a subprocess: init a fresh workspace on ``engine``, then time each stage once."""
    from micromarketing import Workspace
    from micromarketing.config import load_settings

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench-cache") as tmp:
        root = Path(tmp) / "ws"
        os.environ["MICROMARKETING_WAREHOUSE__BACKEND"] = "duckdb" if engine == "duckdb" else "spark"
        os.environ["MICROMARKETING_WAREHOUSE__SPARK_MASTER"] = master
        t = time.perf_counter()
        ws = Workspace.init(root)  # Spark: the driver starts here
        times["start"] = time.perf_counter() - t
        assert load_settings(root).warehouse.backend == os.environ["MICROMARKETING_WAREHOUSE__BACKEND"]
        t = time.perf_counter()
        for kind in KINDS:
            for path in sorted(data.glob(f"{kind}.parquet")):
                ws.ingest(kind, path)
        times["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        ws.profile(as_of=AS_OF)
        times["profile"] = time.perf_counter() - t
        t = time.perf_counter()
        size = ws.segments.preview(rule=RULE).size
        times["segment_count"] = time.perf_counter() - t
        times["segment_size"] = float(size)
        ws.close()
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def standalone_cluster(work: Path) -> Iterator[str]:
    """A master and one 2-core worker on loopback; yields the master URL, stops both by PID."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    work.mkdir(parents=True, exist_ok=True)
    commands = [
        ([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
          "--webui-port", "0"], "I have been elected leader"),
        ([spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
          "--memory", "2g", "--webui-port", "0", "--work-dir", str(work / "work")],
         "Successfully registered with master"),
    ]
    started = []
    try:
        for i, (command, ready) in enumerate(commands):
            log = work / f"daemon-{i}.log"
            with log.open("wb") as out:
                started.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 300
            while ready not in log.read_text(errors="replace"):
                if time.monotonic() > deadline or started[-1].poll() is not None:
                    raise RuntimeError(f"{ready!r} not in {log}")
                time.sleep(0.5)
        yield url
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=60)


def _child(engine: str, master: str, data: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--master", master, "--data", str(data)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode:
        raise RuntimeError(f"{engine} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _linear(
    small: dict[str, float], large: dict[str, float], n_small: int, n_large: int, stage: str
) -> tuple[float, float]:
    """(fixed seconds, seconds per customer) of ``stage`` from the two sizes."""
    per = max((large[stage] - small[stage]) / (n_large - n_small), 0.0)
    return max(large[stage] - per * n_large, 0.0), per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--engines", default="duckdb,local,cluster")
    parser.add_argument("--child")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.child, args.master, args.data)))
        return

    engines = args.engines.split(",")
    sizes = (max(args.customers // 4, 1000), args.customers)
    results: dict[tuple[str, int], dict[str, float]] = {}
    work = ROOT / ".bench-cache" / "spark-cluster"
    cluster = standalone_cluster(work) if "cluster" in engines else _nothing()
    with cluster as url:
        for n in sizes:
            data = prepare(n)
            for engine in engines:
                master = {"duckdb": "", "local": "local[2]", "cluster": url or ""}[engine]
                results[(engine, n)] = _child("duckdb" if engine == "duckdb" else "spark", master, data)
                print(f"{engine:8} {n:>10,} customers: " + ", ".join(
                    f"{s} {results[(engine, n)][s]:.1f}s" for s in STAGES), flush=True)

    n = sizes[1]
    print(f"\n{n:,} customers (seconds; DuckDB is the baseline)")
    header = "".join(f"{e:>12}" for e in engines) + "".join(f"{e + '/duckdb':>16}" for e in engines[1:])
    print(f"{'stage':15}{header}")
    for stage in STAGES:
        row = [results[(e, n)][stage] for e in engines]
        ratio = "".join(f"{r / row[0]:>15.1f}x" for r in row[1:]) if engines[0] == "duckdb" else ""
        print(f"{stage:15}" + "".join(f"{r:>12.1f}" for r in row) + ratio)
    sizes_seen = {e: int(results[(e, n)]["segment_size"]) for e in engines}
    print(f"segment size: {sizes_seen} (must agree)")

    if "duckdb" not in engines or len(engines) < 2:
        return
    spark = "cluster" if "cluster" in engines else engines[1]
    print(f"\nCrossover estimate (ingest + profile + segment count; {spark} fixed + per-customer costs,")
    print("per-customer cost divided by the cores; DuckDB stays on this 2-core machine):")
    stages = ("ingest", "profile", "segment_count")
    fd = pd_ = fs = ps = 0.0
    for stage in stages:
        f, p = _linear(results[("duckdb", sizes[0])], results[("duckdb", n)], sizes[0], n, stage)
        fd, pd_ = fd + f, pd_ + p
        f, p = _linear(results[(spark, sizes[0])], results[(spark, n)], sizes[0], n, stage)
        fs, ps = fs + f, ps + p
    print(f"  DuckDB: {fd:.1f}s + {pd_ * 1e6:.1f}s per million customers; "
          f"Spark (2 cores): {fs:.1f}s + {ps * 1e6:.1f}s per million")
    for cores in CORES:
        per = ps * 2 / cores
        if per >= pd_:
            print(f"  {cores:>4} cores: no crossover (per-customer {per * 1e6:.1f}s/M is not below DuckDB's)")
        else:
            crossover = max(fs - fd, 0.0) / (pd_ - per)
            print(f"  {cores:>4} cores: Spark is faster above ~{crossover:,.0f} customers")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    if shutil.which("java") is None:
        sys.exit("Spark needs Java")
    main()
