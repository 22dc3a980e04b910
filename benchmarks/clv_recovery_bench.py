"""Parameter recovery and interval coverage of the CLV fit on the single generated population.

For each seed: ``datasets generate --population single`` (20,000 customers by default), the
clv summary of its transactions as of the day after the reference date (weeks), the BG/NBD +
Gamma-Gamma fit, and for every parameter in ``params.json`` whether it is recovered within 25 %
and whether the 95 % Wald interval (estimate +- 1.96 standard errors) covers it.  Baseline
printed in the same run: the share of intervals expected to cover (0.95, i.e. >= 17 of 20 seeds
at the binomial 5 % level) and the recovery of a plain moment estimate of the mean spend.

    PYTHONPATH=src python benchmarks/clv_recovery_bench.py [--seeds 20] [--customers 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import ibis
import pandas as pd

from micromarketing.datasets.generator import generate
from micromarketing.profiles.clv import clv_summary, fit_summary

AS_OF = date(2026, 7, 1)


def fit_seed(seed: int, customers: int) -> tuple[dict, dict, float, float]:
    """(true parameters, fitted {name: (estimate, se)}, seconds to fit, observed mean repeat spend)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out, customers=customers, seed=seed, population="single")
        true = json.loads((out / "params.json").read_text())
        tx = pd.read_csv(out / "transactions.csv", usecols=["customer_id", "ordered_at", "amount"])
    tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
    summary = clv_summary(ibis.memtable(tx), AS_OF, unit_days=7.0)
    t0 = time.perf_counter()
    fit = fit_summary(summary, as_of=AS_OF)
    seconds = time.perf_counter() - t0
    est = {k: (v, fit.std_errors[k]) for k, v in fit.params.items()}
    est |= {k: (v, fit.spend_std_errors[k]) for k, v in fit.spend_params.items()}
    observed = summary.filter(summary.frequency > 0).monetary_value.mean().execute()
    return true, est, seconds, float(observed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    within: dict[str, int] = {}
    covered: dict[str, int] = {}
    worst: dict[str, float] = {}
    mean_err_model, mean_err_naive = [], []
    for seed in range(args.seeds):
        true, est, seconds, observed = fit_seed(seed, args.customers)
        flat = true["bgnbd"] | true["gamma_gamma"]
        for name, value in flat.items():
            e, se = est[name]
            rel = abs(e - value) / value
            within[name] = within.get(name, 0) + (rel <= 0.25)
            covered[name] = covered.get(name, 0) + (abs(e - value) <= 1.96 * se)
            worst[name] = max(worst.get(name, 0.0), rel)
        gg = true["gamma_gamma"]
        true_mean = gg["p"] * gg["gamma"] / (gg["q"] - 1)
        mean_err_model.append(abs(est["p"][0] * est["gamma"][0] / (est["q"][0] - 1) - true_mean) / true_mean)
        mean_err_naive.append(abs(observed - true_mean) / true_mean)
        print(f"seed {seed:2d}: fit {seconds:5.2f} s  " + "  ".join(f"{k}={est[k][0]:.4g}" for k in flat))
    n = args.seeds
    print(
        f"\n{n} seeds x {args.customers:,} customers; baseline: 95 % intervals should cover in >= "
        f"{int(0.95 * n - 1.645 * (0.95 * 0.05 * n) ** 0.5)} of {n}"
    )
    print(f"{'parameter':10s} {'within 25%':>11s} {'worst error':>12s} {'95% covers':>11s}")
    for name in within:
        print(f"{name:10s} {within[name]:>8d}/{n} {worst[name]:>11.1%} {covered[name]:>8d}/{n}")
    print(
        f"mean spend per purchase: model p*gamma/(q-1) worst error {max(mean_err_model):.1%}; "
        f"baseline (observed mean repeat spend) worst error {max(mean_err_naive):.1%}"
    )


if __name__ == "__main__":
    main()
