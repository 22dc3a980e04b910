"""Coverage of the demo's measured lift intervals over many seeds (issue #14).

Each seed runs the whole demo (generate → … → campaign → simulated responses from a known true
uplift → measure) and counts how many 95% intervals of the absolute conversion lift (one per
segment × variant) cover the simulated true lift.  Over many seeds the share should be close to
the nominal 95%; the baseline printed beside it is that nominal rate and the binomial band a
correct procedure would fall in for the same number of intervals.

    .venv/bin/python benchmarks/demo_coverage_bench.py [--seeds 50] [--customers 1500]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from micromarketing import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--customers", type=int, default=1500)
    args = parser.parse_args()
    covered = compared = 0
    started = time.perf_counter()
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            report = run_demo(Path(tmp), customers=args.customers, seed=seed)
        c, n = report.lift_coverage()
        covered, compared = covered + c, compared + n
        print(f"seed {seed:3d}: {c:2d} of {n:2d} intervals cover the true lift", flush=True)
    share = covered / compared if compared else float("nan")
    band = 1.96 * math.sqrt(0.95 * 0.05 / compared) if compared else float("nan")
    print(
        f"\n{args.seeds} seeds × {args.customers:,} customers: {covered:,} of {compared:,} intervals cover "
        f"the true lift = {share:.1%} (nominal 95.0%, a correct procedure falls in "
        f"{0.95 - band:.1%}–{0.95 + band:.1%} for this many intervals); {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
