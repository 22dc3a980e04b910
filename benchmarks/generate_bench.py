"""Benchmark: the demo-data generator at 100k and 1M customers, CSV and Parquet.

Each run happens in its own process so its peak memory (``resource.getrusage(RUSAGE_SELF)
.ru_maxrss``) is its own.  For each run we print wall time, rows written (all tables), order
lines, rows/s, peak RSS and bytes on disk, next to the baseline of the same run: pyarrow reading
the generated transactions + events files back and writing them again in the same format (pure
encode + I/O, no simulation) — the floor the generator could reach.

Run: ``.venv/bin/python benchmarks/generate_bench.py [--sizes 100000 1000000] [--formats csv parquet]``.
Output goes to a temporary directory that is removed afterwards (``--keep DIR`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(customers: int, fmt: str, out: Path) -> dict:
    """Generate once in this process and measure it."""
    from micromarketing.datasets import generate

    start = time.perf_counter()
    result = generate(out, customers=customers, seed=1, fmt=fmt)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(p.stat().st_size for p in result.paths.values())
    return {"customers": customers, "fmt": fmt, "seconds": elapsed, "rows": sum(result.rows.values()),
            "lines": result.rows["transactions"], "events": result.rows["events"], "peak_mb": peak_mb,
            "bytes": size, "paths": {k: str(v) for k, v in result.paths.items()}}


def _baseline(paths: dict[str, str], scratch: Path) -> dict:
    """Read transactions + events back with pyarrow and write them again in the same format."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    start = time.perf_counter()
    rows = 0
    for name in ("transactions", "events"):
        src = Path(paths[name])
        if src.suffix == ".parquet":
            table = pq.read_table(src)
            pq.write_table(table, scratch / src.name, compression="zstd")
        elif src.suffix == ".jsonl":
            table = pajson.read_json(src)
            pacsv.write_csv(table, scratch / (src.stem + ".csv"))  # pyarrow has no JSON writer
        else:
            table = pacsv.read_csv(src)
            pacsv.write_csv(table, scratch / src.name)
        rows += table.num_rows
        del table
    return {"seconds": time.perf_counter() - start, "rows": rows,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(*args: str) -> dict:
    """Run one measurement in a fresh process: Linux copies the peak-RSS mark across fork, so a
    parent that held big tables would inflate the child's figure."""
    proc = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "parquet"])
    parser.add_argument("--keep", type=Path, help="keep the generated files under this directory")
    parser.add_argument("--one", nargs=3, metavar=("CUSTOMERS", "FMT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=2, metavar=("PATHS_JSON", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        customers, fmt, out = int(args.one[0]), args.one[1], Path(args.one[2])
        print(json.dumps(_one(customers, fmt, out)))
        return
    if args.baseline:
        print(json.dumps(_baseline(json.loads(args.baseline[0]), Path(args.baseline[1]))))
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="mm-generate-bench-"))
    print(f"{'customers':>10} {'fmt':>7} {'seconds':>8} {'rows':>12} {'order lines':>12} {'events':>11} "
          f"{'rows/s':>10} {'peak MB':>8} {'GB on disk':>10} | {'baseline s':>10} {'baseline rows/s':>15} "
          f"{'peak MB':>8}",
          flush=True)
    try:
        for customers in args.sizes:
            for fmt in args.formats:
                out = root / f"{customers}-{fmt}"
                r = _child("--one", str(customers), fmt, str(out))
                scratch = root / f"baseline-{customers}-{fmt}"
                scratch.mkdir(parents=True, exist_ok=True)
                base = _child("--baseline", json.dumps(r["paths"]), str(scratch))
                shutil.rmtree(scratch)
                print(f"{customers:>10,} {fmt:>7} {r['seconds']:>8.1f} {r['rows']:>12,} {r['lines']:>12,} "
                      f"{r['events']:>11,} {r['rows'] / r['seconds']:>10,.0f} {r['peak_mb']:>8.0f} "
                      f"{r['bytes'] / 1e9:>10.2f} | {base['seconds']:>10.1f} "
                      f"{base['rows'] / base['seconds']:>15,.0f} {base['peak_mb']:>8.0f}", flush=True)
                if not args.keep:
                    shutil.rmtree(out)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
