"""Time `segment discover` on 1M customers (target: ≤ 60 s) against a plain scikit-learn baseline.

Methods, each in its own subprocess (own peak memory), on the same profiled workspace:
  discover_auto   discover_segments(k="auto"): warehouse features, k chosen over 2..12 by
                  stability then silhouette, k-means on a sample, assignment and personas in
                  the warehouse, six segments saved (the figure the 60 s target is about);
  discover_k6     the same with k fixed at 6 (no selection);
  baseline_mbk    baseline: the same feature matrix pulled into numpy, standardised there, then
                  sklearn MiniBatchKMeans(k=6) fitted and predicted on every row (what one would
                  write by hand), nothing saved.
Each prints its wall time and the adjusted Rand index against the planted truth.

    .venv/bin/python benchmarks/discover_bench.py [--customers 1000000] [--repeat 1]

Data is generated once (Parquet, seed 1) and ingested and profiled once, cached under
.bench-cache/discover-<customers>/.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 7, 1)


def prepare(customers: int) -> Path:
    from micromarketing import Workspace
    from micromarketing.datasets import generate

    base = ROOT / ".bench-cache" / f"discover-{customers}"
    data, ws_dir = base / "data", base / "workspace"
    if not (data / "truth.parquet").exists():
        t = time.perf_counter()
        generate(data, customers=customers, seed=1, fmt="parquet")
        print(f"generated {customers:,} customers in {time.perf_counter() - t:.1f}s", flush=True)
    if not (ws_dir / "profiled.ok").exists():
        shutil.rmtree(ws_dir, ignore_errors=True)
        t = time.perf_counter()
        with Workspace.init(ws_dir) as ws:
            for kind in ("products", "stores", "customers", "transactions", "events"):
                for path in sorted(data.glob(f"{kind}.*")):
                    ws.ingest(kind, path)
            print(f"ingested in {time.perf_counter() - t:.1f}s", flush=True)
            t = time.perf_counter()
            ws.profile(as_of=AS_OF)
            print(f"profiled in {time.perf_counter() - t:.1f}s", flush=True)
        (ws_dir / "profiled.ok").write_text("ok")
    return base


def _truth(base: Path):
    import pyarrow.parquet as pq

    t = pq.read_table(base / "data" / "truth.parquet").to_pandas()
    return t.set_index("customer_id")["segment"]


def run_method(method: str, base: Path) -> dict[str, object]:
    """Runs inside a subprocess on a copy of the cached workspace."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from micromarketing import Workspace

    work = base / f"run-{method}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base / "workspace", work)
    ws = Workspace.open(work)
    truth = _truth(base)
    out: dict[str, object] = {}
    t = time.perf_counter()
    if method.startswith("discover"):
        from micromarketing.segments import Segments
        from micromarketing.segments.discover import discover_segments

        result = discover_segments(ws, k="auto" if method == "discover_auto" else 6, seed=0)
        out["seconds"] = time.perf_counter() - t
        out["k"] = result.k
        out["phases"] = result.timings
        segs = Segments(ws)
        ids, labels = [], []
        for i, s in enumerate(result.segments):
            members = segs.member_table(s.name).customer_id.to_pyarrow().to_pylist()
            ids += members
            labels += [i] * len(members)
        out["personas"] = [s.persona.name for s in result.segments]
    else:
        from sklearn.cluster import MiniBatchKMeans

        from micromarketing.segments.features import load_features

        fm = load_features(ws)
        x = fm.values.copy()
        for j, spec in enumerate(fm.specs):
            if spec.log:
                x[:, j] = np.log1p(np.clip(x[:, j], 0, None))
        x = ((x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)).astype(np.float32)
        model = MiniBatchKMeans(6, random_state=0, batch_size=4096, n_init=3).fit(x)
        labels = model.predict(x).tolist()
        ids = fm.customer_ids.tolist()
        out["seconds"] = time.perf_counter() - t
        out["k"] = 6
    out["ari"] = float(adjusted_rand_score(truth.loc[ids].to_numpy(), np.asarray(labels)))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ws.close()
    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--methods", default="discover_auto,discover_k6,baseline_mbk")
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    parser.add_argument("--_base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._run:
        print(json.dumps(run_method(args._run, Path(args._base))))
        return
    base = prepare(args.customers)
    print(f"\n{args.customers:,} customers, as of {AS_OF}; target: discover ≤ 60 s")
    for method in args.methods.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--_run", method, "--_base", str(base)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{method}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        line = (
            f"{method:14s} {r['seconds']:7.1f} s   k={r['k']}   ARI vs truth {r['ari']:.3f}   "
            f"peak RSS {r['peak_rss_mb']:,.0f} MB"
        )
        print(line, flush=True)
        if "phases" in r:
            print("               phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items()))
        if "personas" in r:
            print("               personas: " + "; ".join(r["personas"]))


if __name__ == "__main__":
    main()
