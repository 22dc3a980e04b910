"""Benchmark: ingest of 1M- and 10M-row transactions CSV files against a plain DuckDB load.

Generates the files with numpy/pyarrow (cached under ``.bench-cache/``), ingests each into a fresh
workspace with :func:`micromarketing.ingest.ingest_file`, and prints rows/s next to the baseline:
``CREATE TABLE t AS SELECT * FROM read_csv(...)`` of the same file in a fresh DuckDB database
(no validation, no quarantine, no upsert).  About 0.5 % of the rows are deliberately invalid.

Run: ``.venv/bin/python benchmarks/ingest_bench.py [--sizes 1000000 10000000]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CACHE = Path(__file__).resolve().parent.parent / ".bench-cache"
CHUNK = 1_000_000


def generate_transactions(path: Path, rows: int, seed: int = 7) -> Path:
    """Write ``rows`` transaction lines (about 0.5 % invalid) to ``path`` unless it exists."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    currencies = np.array(["USD", "EUR", "GBP"])
    channels = np.array(["online", "store", "app", "phone"])
    categories = np.array(["books", "garden", "toys", "food", "tools", "beauty"])
    start = np.datetime64("2022-01-01T00:00:00", "s")
    options = pacsv.WriteOptions(quoting_style="none")
    with pacsv.CSVWriter(tmp, _schema(), write_options=options) as writer:
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            idx = np.arange(lo, lo + n)
            amount = _text(np.round(rng.gamma(2.0, 20.0, n), 2))
            currency = pa.array(currencies[rng.integers(0, 3, n)].tolist())
            bad = rng.random(n) < 0.005
            negative = pa.array(bad & (rng.random(n) < 0.5))
            amount = pc.if_else(negative, "-5", amount)
            currency = pc.if_else(pc.and_(pa.array(bad), pc.invert(negative)), "XXX", currency)
            seconds = rng.integers(0, 3 * 365 * 86400, n)
            ordered_at = pc.strftime(
                pa.array(start + seconds.astype("timedelta64[s]"), pa.timestamp("s")),
                format="%Y-%m-%dT%H:%M:%SZ",
            )
            batch = pa.record_batch(
                [
                    _prefixed("O", idx // 3),
                    _text(idx % 3 + 1),
                    _prefixed("C", rng.integers(0, rows // 20 + 1, n)),
                    ordered_at,
                    _prefixed("P", rng.integers(0, 5000, n)),
                    pa.array(categories[rng.integers(0, len(categories), n)].tolist()),
                    _text(rng.integers(1, 5, n)),
                    amount,
                    currency,
                    pa.array(channels[rng.integers(0, 4, n)].tolist()),
                    _prefixed("S", rng.integers(0, 200, n)),
                ],
                schema=_schema(),
            )
            writer.write_batch(batch)
    tmp.rename(path)
    return path


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _prefixed(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, _text(values), "")


def _schema() -> pa.Schema:
    names = ["order_id", "line_no", "customer_id", "ordered_at", "product_id", "category",
             "quantity", "amount", "currency", "channel", "store_id"]
    return pa.schema([(n, pa.string()) for n in names])


def baseline(path: Path) -> float:
    """Seconds for a plain DuckDB CTAS of the file into a fresh database file."""
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "base.duckdb"))
        t0 = time.perf_counter()
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}')")
        elapsed = time.perf_counter() - t0
        con.close()
    return elapsed


def run_ingest(path: Path) -> tuple[float, object]:
    """Seconds to ingest the file into a fresh workspace, and the IngestResult."""
    from micromarketing.ingest import ingest_file
    from micromarketing.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    try:
        ws = Workspace.init(root / "ws")
        t0 = time.perf_counter()
        result = ingest_file(ws, "transactions", path)
        elapsed = time.perf_counter() - t0
        ws.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    for rows in args.sizes:
        path = generate_transactions(CACHE / f"transactions-{rows}.csv", rows)
        size_mb = path.stat().st_size / 1e6
        base = baseline(path)
        elapsed, result = run_ingest(path)
        print(
            f"{rows:>11,} rows ({size_mb:,.0f} MB): "
            f"ingest {elapsed:6.1f} s = {rows / elapsed:>10,.0f} rows/s "
            f"(accepted {result.accepted:,}, rejected {result.rejected:,}); "
            f"baseline DuckDB CTAS {base:5.1f} s = {rows / base:>10,.0f} rows/s; ratio {elapsed / base:.1f}x"
        )


if __name__ == "__main__":
    main()
