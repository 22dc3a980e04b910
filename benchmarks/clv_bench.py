# ruff: noqa: E501
"""CLV benchmark: BG/NBD on 1M customers against lifetimes and pymc-marketing (MAP); Pareto/NBD speed.

Prints, for the same 1M customers (BG/NBD draws, recency and T at day resolution, in weeks):
our fit time on the customer-level frame (including the collapse to unique triples), lifetimes'
``BetaGeoFitter`` and pymc-marketing's ``BetaGeoModel`` fitted by MAP (both warm, in a separate
venv ``.bench-venv/`` created on first run from PyPI and run in a subprocess), the ratios, and
every estimate's log-likelihood under our implementation.  Then the full workspace pipeline on
the same customers: transactions in DuckDB -> ``fit_clv`` (SQL summary, fit, store) ->
``clv_features`` materialised (scoring + tiers).

``--pareto`` instead times Pareto/NBD on the default generated workspace (20,000 customers,
seed 0): this implementation (wall and CPU seconds) against the hyp2f1 implementation it
replaced (``OLD_PARETO_COMMIT``, run in a subprocess with a time limit), and on the CDNOW
sample against lifetimes' ``ParetoNBDFitter`` and the published estimates.

    .venv/bin/python benchmarks/clv_bench.py [--customers 1000000] [--skip-baselines] [--skip-pipeline]
    .venv/bin/python benchmarks/clv_bench.py --pareto [--old-timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".bench-venv"
CACHE = ROOT / ".bench-cache"
TRUE = (0.8, 6.0, 1.2, 3.5)  # r, alpha, a, b (weeks)
OLD_PARETO_COMMIT = "7615d09"  # main before the Pareto/NBD mean-form rewrite (hyp2f1 per pair, numerical gradient)
PUBLISHED_PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}  # Fader, Hardie & Lee (2005)
END = date(2024, 12, 31)  # last observed day

BASELINE = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
df = pd.read_csv(sys.argv[1])
out = {}
from lifetimes import BetaGeoFitter
small = df.iloc[:20000]
BetaGeoFitter().fit(small["frequency"], small["recency"], small["T"])  # warm-up
t0 = time.perf_counter()
bgf = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
out["lifetimes"] = {"seconds": time.perf_counter() - t0, "params": [float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")]}
from pymc_marketing.clv import BetaGeoModel
def pymc_fit(frame):
    data = frame.reset_index(drop=True).assign(customer_id=lambda d: np.arange(len(d)))
    model = BetaGeoModel(data=data[["customer_id", "frequency", "recency", "T"]])
    model.fit(method="map", progressbar=False)
    post = model.idata.posterior
    return [float(post[k].values.ravel()[0]) for k in ("r", "alpha", "a", "b")]
pymc_fit(small)  # warm-up (graph compilation)
t0 = time.perf_counter()
params = pymc_fit(df)
out["pymc_marketing_map"] = {"seconds": time.perf_counter() - t0, "params": params}
print("BASELINE_JSON " + json.dumps(out))
"""


def simulate(n: int, seed: int = 2024) -> pd.DataFrame:
    """BG/NBD customers with ages of 1 to 730 days; purchase times in whole days."""
    r, alpha, a, b = TRUE
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n) / 7.0  # per day
    p = rng.beta(a, b, n)
    age = rng.integers(1, 731, n).astype(float)  # days from first purchase to END
    x = np.zeros(n, dtype=np.int64)
    last = np.zeros(n)
    t = np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        t[active] += rng.exponential(1 / lam[active])
        buy = active & (t <= age)
        x[buy] += 1
        last[buy] = t[buy]
        active = buy & (rng.uniform(size=n) >= p)
    last_day = np.minimum(np.floor(last), age - 1)
    # Repeat purchases that fall on the same day as the previous one would merge in SQL; keep the
    # frame consistent with that by treating x as distinct days (a negligible share at these rates).
    return pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "frequency": x,
            "recency": last_day / 7.0,
            "T": (age - 1) / 7.0,
            "age_days": age,
            "last_day": last_day,
        }
    )


def ensure_bench_venv(packages: tuple[str, ...] = ("lifetimes", "pymc-marketing")) -> Path:
    """The baselines' own venv (their pins clash with ours), with ``packages`` installed."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        base = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base), "-m", "venv", str(BENCH_VENV)], check=True)
    modules = {"lifetimes": "lifetimes", "pymc-marketing": "pymc_marketing"}
    missing = [
        p for p in packages
        if subprocess.run([str(py), "-c", f"import {modules[p]}"], capture_output=True).returncode != 0
    ]  # fmt: skip
    if missing:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *missing], check=True)
    return py


OLD_PARETO = r"""
import importlib.util, json, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("old_clv_models", sys.argv[1])
old = sys.modules["old_clv_models"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(old)
a = np.load(sys.argv[2])
d = old.Triples.build(a["x"], a["t_x"], a["T"])
t0, c0 = time.perf_counter(), time.process_time()
fit = old.fit_transactions("paretonbd", d)
print("OLD_JSON " + json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                                "params": fit.params, "converged": fit.converged, "loglik": fit.loglik}))
"""

LIFETIMES_PARETO = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
from lifetimes import ParetoNBDFitter
df = pd.read_csv(sys.argv[1])
t0 = time.perf_counter()
f = ParetoNBDFitter().fit(df["frequency"], df["recency"], df["T"])
print("LIFETIMES_JSON " + json.dumps({"seconds": time.perf_counter() - t0,
                                      "params": {k: float(f.params_[k]) for k in ("r", "alpha", "s", "beta")}}))
"""


def _tagged(proc: subprocess.CompletedProcess[str], tag: str) -> dict | None:
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(tag + " ")), None)
    return None if line is None else json.loads(line.split(" ", 1)[1])


def pareto_benchmark(old_timeout: float) -> None:
    """Pareto/NBD: the default 20k generated workspace (new vs old), CDNOW (vs lifetimes, published)."""
    import ibis

    from micromarketing.datasets import generate
    from micromarketing.profiles import clv_models as m
    from micromarketing.profiles.clv import clv_summary
    from micromarketing.profiles.clv_validate import cdnow_path, read_transactions_file

    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), customers=20_000, seed=0)
        tx = pd.read_csv(Path(tmp) / "transactions.csv", usecols=["customer_id", "ordered_at", "amount"])
    tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
    as_of = (tx["ordered_at"].max() + pd.Timedelta(days=1)).date()
    s = clv_summary(ibis.memtable(tx), as_of, unit_days=7.0).to_pandas()
    d = m.Triples.build(s["frequency"], s["recency"], s["T"])
    t0, c0 = time.perf_counter(), time.process_time()
    new = m.fit_transactions("paretonbd", d)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    print(
        f"pareto/nbd, 20,000 generated customers ({len(d.x):,} unique triples), load average {load:.1f} on "
        f"{os.cpu_count()} CPUs:\n  new: {wall:.2f} s wall, {cpu:.2f} s CPU (target <= 10 s), "
        f"converged={new.converged}, limit={new.limit}, LL={new.loglik:.3f}, "
        f"params={ {k: round(v, 6) for k, v in new.params.items()} }"
    )
    npz = CACHE / "pareto_20k.npz"
    np.savez(npz, x=d.x, t_x=d.t_x, T=d.T)
    old_src = subprocess.run(
        ["git", "show", f"{OLD_PARETO_COMMIT}:src/micromarketing/profiles/clv_models.py"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if old_src.returncode != 0:
        print(f"  old: not run (git show {OLD_PARETO_COMMIT} failed: {old_src.stderr.strip()})")
    else:
        old_path = CACHE / "old_clv_models.py"
        old_path.write_text(old_src.stdout)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", OLD_PARETO, str(old_path), str(npz)],
                capture_output=True, text=True, timeout=old_timeout,
            )  # fmt: skip
            old = _tagged(proc, "OLD_JSON")
            if old is None:
                print(f"  old ({OLD_PARETO_COMMIT}): failed: {proc.stderr.strip().splitlines()[-1:]}")
            else:
                print(
                    f"  old ({OLD_PARETO_COMMIT}): {old['seconds']:.2f} s wall, {old['cpu']:.2f} s CPU, "
                    f"ratio {old['seconds'] / wall:.1f}x, converged={old['converged']}, LL={old['loglik']:.3f}"
                )
        except subprocess.TimeoutExpired:
            print(
                f"  old ({OLD_PARETO_COMMIT}): did not finish within {old_timeout:g} s wall "
                f"(> {old_timeout / wall:.0f}x the new fit); stopped"
            )

    cdnow = clv_summary(ibis.memtable(read_transactions_file(cdnow_path())), date(1997, 10, 1), unit_days=7.0)
    c = cdnow.to_pandas()
    dc = m.Triples.build(c["frequency"], c["recency"], c["T"])
    t0 = time.perf_counter()
    ours = m.fit_transactions("paretonbd", dc)
    ours_s = time.perf_counter() - t0
    print(
        f"pareto/nbd, CDNOW sample (2,357 customers): ours {ours_s:.2f} s, LL={ours.loglik:.3f}, "
        f"params={ {k: round(v, 4) for k, v in ours.params.items()} }; published {PUBLISHED_PNBD}"
    )
    csv = CACHE / "cdnow_summary.csv"
    c[["frequency", "recency", "T"]].to_csv(csv, index=False, float_format="%.17g")
    py = ensure_bench_venv(("lifetimes",))
    proc = subprocess.run([str(py), "-c", LIFETIMES_PARETO, str(csv)], capture_output=True, text=True)
    theirs = _tagged(proc, "LIFETIMES_JSON")
    if theirs is None:
        print(f"  lifetimes ParetoNBDFitter failed: {proc.stderr.strip().splitlines()[-3:]}")
        return
    p = theirs["params"]
    ll = m.paretonbd_loglik([p[k] for k in ("r", "alpha", "s", "beta")], dc)[0]
    diff = max(abs(ours.params[k] - v) / v for k, v in p.items()) if ours.limit is None else float("nan")
    print(
        f"  lifetimes ParetoNBDFitter: {theirs['seconds']:.2f} s, ratio {theirs['seconds'] / ours_s:.1f}x, "
        f"params={ {k: round(v, 4) for k, v in p.items()} }, largest relative difference to ours {diff:.1e}, "
        f"LL under our likelihood {ll:.3f} (ours - theirs = {ours.loglik - ll:+.4f})"
    )


def transactions_from(summary: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Order rows consistent with a summary: first day, x-1 uniform intermediate days, last day."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(END, tz="UTC") + pd.Timedelta(hours=12)
    first = end - pd.to_timedelta(summary["age_days"].to_numpy() - 1, unit="D")
    x = summary["frequency"].to_numpy()
    ids = summary["customer_id"].to_numpy()
    rep = np.repeat(np.arange(len(x)), np.maximum(x - 1, 0))
    inter = np.floor(rng.uniform(0, 1, len(rep)) * summary["last_day"].to_numpy()[rep])
    offsets = np.concatenate([np.zeros(len(x)), summary["last_day"].to_numpy()[x > 0], inter])
    owner = np.concatenate([np.arange(len(x)), np.flatnonzero(x > 0), rep])
    ts = first[owner] + pd.to_timedelta(offsets, unit="D")
    amount = np.round(rng.gamma(6.0, 5.0, len(owner)), 2)
    return pd.DataFrame(
        {
            "order_id": np.char.add("o", np.arange(len(owner)).astype(str)),
            "line_no": 1,
            "customer_id": ids[owner],
            "ordered_at": ts,
            "amount": amount,
            "currency": "USD",
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--pareto", action="store_true", help="only the Pareto/NBD timings")
    ap.add_argument("--old-timeout", type=float, default=120.0, help="seconds the old Pareto/NBD fit may take")
    args = ap.parse_args()
    if args.pareto:
        pareto_benchmark(args.old_timeout)
        return
    from micromarketing.profiles import clv_models as m

    t0 = time.perf_counter()
    df = simulate(args.customers)
    print(
        f"generated {len(df):,} customers in {time.perf_counter() - t0:.1f} s; "
        f"mean frequency {df.frequency.mean():.2f}, repeaters {(df.frequency > 0).mean():.1%}"
    )

    # Ours: customer-level frame in, collapse + fit (warm: one small fit first).
    m.fit_transactions("bgnbd", m.Triples.build(df.frequency[:20000], df.recency[:20000], df["T"][:20000]))
    t0 = time.perf_counter()
    trip = m.Triples.build(df.frequency, df.recency, df["T"])
    ours = m.fit_transactions("bgnbd", trip)
    ours_s = time.perf_counter() - t0
    print(
        f"ours: {ours_s:.2f} s ({len(trip.x):,} unique triples), converged={ours.converged}, "
        f"LL={ours.loglik:.3f}, params={ {k: round(v, 4) for k, v in ours.params.items()} }"
    )

    if not args.skip_baselines:
        py = ensure_bench_venv()
        CACHE.mkdir(exist_ok=True)
        path = CACHE / f"clv_{args.customers}.csv"
        df[["frequency", "recency", "T"]].to_csv(path, index=False, float_format="%.17g")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run([str(py), "-c", BASELINE, str(path)], capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BASELINE_JSON ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit("baseline subprocess failed")
        base = json.loads(line.split(" ", 1)[1])
        for name, res in base.items():
            ll = m.bgnbd_loglik(res["params"], trip)[0]
            print(
                f"{name}: {res['seconds']:.2f} s, ratio {res['seconds'] / ours_s:.1f}x slower than ours, "
                f"LL={ll:.3f} (ours - theirs = {ours.loglik - ll:+.4f}), params={[round(v, 4) for v in res['params']]}"
            )

    if not args.skip_pipeline:
        import ibis

        from micromarketing import Workspace
        from micromarketing.profiles.clv import clv_features, fit_clv

        tx = transactions_from(df)
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace.init(Path(tmp) / "ws")
            t0 = time.perf_counter()
            ws.warehouse.upsert("transactions", ibis.memtable(tx))
            print(
                f"pipeline setup: {len(tx):,} transaction rows loaded in {time.perf_counter() - t0:.1f} s (not timed)"
            )
            as_of = END + timedelta(days=1)
            t0 = time.perf_counter()
            fit = fit_clv(ws, as_of=as_of)
            t_fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            scores = ws.warehouse.replace_table("clv_bench_scores", clv_features(ws, as_of, fit))
            n = int(scores.count().execute())
            t_score = time.perf_counter() - t1
            print(
                f"pipeline: fit_clv {t_fit:.2f} s (SQL summary + BG/NBD + Gamma-Gamma + store), "
                f"clv_features {t_score:.2f} s for {n:,} customers; total {t_fit + t_score:.2f} s "
                f"(target <= 30 s); LL={fit.loglik:.2f}, converged={fit.converged}"
            )
            ws.close()


if __name__ == "__main__":
    main()
