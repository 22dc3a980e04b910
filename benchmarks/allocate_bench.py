"""Thompson-sampling reallocation against an even split and greedy allocation, over many seeds.

Eight segment × variant arms with known response (one rare, high-value best arm whose first
round is noisy; a safe runner-up; several arms that lose money), a fixed budget per round, a
10–20% control per segment.  Every policy starts with an even round; the score is the true
expected incremental profit of the recipients each policy bought.  Baselines measured in the
same run: the even split and greedy (all budget on the best observed ROI), plus the oracle (all
budget on the truly best arm from the start).

    PYTHONPATH=src python benchmarks/allocate_bench.py [--seeds 100] [--rounds 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from micromarketing.measure.allocate import TrueArm, simulate

MARGIN = 0.3
TRUTH = [
    TrueArm("vip", "a", 0.020, 0.005, 400.0, 0.5),  # the best arm: rare conversions, big orders
    TrueArm("vip", "b", 0.010, 0.005, 400.0, 0.5),
    TrueArm("lapsed", "a", 0.080, 0.040, 80.0, 0.5),  # the safe runner-up
    TrueArm("lapsed", "b", 0.070, 0.040, 80.0, 0.5),
    TrueArm("new", "a", 0.030, 0.020, 60.0, 0.5),
    TrueArm("new", "b", 0.020, 0.020, 60.0, 0.5),
    TrueArm("loyal", "a", 0.110, 0.090, 70.0, 0.5),
    TrueArm("loyal", "b", 0.100, 0.090, 70.0, 0.5),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--budget", type=float, default=400.0)
    parser.add_argument("--min-share", type=float, default=0.01)
    parser.add_argument("--control-share", type=float, default=0.2)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    best = max(arm.profit_per_recipient(MARGIN) for arm in TRUTH)
    oracle = args.rounds * args.budget / TRUTH[0].cost_per_recipient * best
    started = time.perf_counter()
    scores = {
        policy: np.array(
            [
                simulate(
                    TRUTH,
                    policy,
                    rounds=args.rounds,
                    budget=args.budget,
                    margin=MARGIN,
                    min_share=args.min_share,
                    control_share=args.control_share,
                    draws=args.draws,
                    seed=seed,
                )
                for seed in range(args.seeds)
            ]
        )
        for policy in ("thompson", "greedy", "even")
    }
    elapsed = time.perf_counter() - started
    print(
        f"{args.seeds} seeds × {args.rounds} rounds of {args.budget:g}, {len(TRUTH)} arms, "
        f"floor {args.min_share:.0%}, control {args.control_share:.0%} ({elapsed:.1f} s)"
    )
    print(f"  oracle (baseline)   {oracle:12,.0f}")
    for policy, values in scores.items():
        p10 = np.percentile(values, 10)
        se = values.std(ddof=1) / np.sqrt(values.size)
        print(
            f"  {policy:<18}  {values.mean():12,.0f}  ± {se:8,.0f} (s.e.)"
            f"   {values.mean() / oracle:6.1%} of oracle   10th percentile {p10:10,.0f}"
        )
    for baseline in ("greedy", "even"):
        diff = scores["thompson"] - scores[baseline]
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        relative = diff.mean() / abs(scores[baseline].mean())
        print(
            f"  thompson − {baseline:<7} {diff.mean():12,.0f}  ± {se:8,.0f} (s.e.)"
            f"   {relative:+7.1%}   thompson ahead in {(diff > 0).mean():.0%} of seeds"
        )


if __name__ == "__main__":
    main()
