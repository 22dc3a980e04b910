"""Run the CLV fits and tests under every OpenBLAS kernel this CPU can run, and compare them.

OpenBLAS picks its kernels per CPU; ``OPENBLAS_CORETYPE`` forces one.  A fit whose end point
depends on the kernel converges on one machine and not on another, so this script runs the
same fits in subprocesses under Prescott (any x86-64), Sandybridge (AVX), Haswell and Zen
(AVX2) and SkylakeX (AVX-512F) -- skipping kernels whose instructions ``/proc/cpuinfo`` lacks,
because forcing one crashes -- and prints per kernel the parameters, log-likelihood,
convergence and the outcome of the CLV tests, then whether every kernel agrees (1e-6 relative).

    python scripts/check_blas_kernels.py            # fits and tests (a few minutes)
    python scripts/check_blas_kernels.py --no-tests # fits only

The machine's own OPENBLAS_* settings are used for nothing else; tests never change them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

KERNELS = {"Prescott": None, "Sandybridge": "avx", "Haswell": "avx2", "Zen": "avx2", "SkylakeX": "avx512f"}
TESTS = ["tests/profiles/test_clv_models.py", "tests/profiles/test_clv.py"]
RELATIVE = 1e-6
ROOT = Path(__file__).resolve().parent.parent


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def worker() -> None:
    """Print the fits of this process (under whatever kernel it was started with) as JSON."""
    import ibis
    import numpy as np
    import pandas as pd

    from micromarketing.datasets import generate
    from micromarketing.profiles import clv_models as m
    from micromarketing.profiles.clv import clv_summary, fit_summary
    from micromarketing.profiles.clv_validate import cdnow_path, read_transactions_file

    sys.path.insert(0, str(ROOT / "tests" / "profiles"))
    from test_clv_models import _homogeneous_dropout_sample, _homogeneous_spend_sample

    out: dict[str, dict] = {}

    def record(name: str, fit: m.FitResult | object) -> None:
        if isinstance(fit, m.FitResult):
            out[name] = {
                "params": fit.params,
                "loglik": fit.loglik,
                "converged": fit.converged,
                "limit": fit.limit,
                "message": fit.message,
            }
        else:
            d = fit.to_dict()  # type: ignore[attr-defined]
            out[name] = {
                "params": d["params"],
                "loglik": d["loglik"],
                "converged": d["converged"],
                "limit": d.get("limit"),
                "message": d["message"],
            }
            out[name + " gamma_gamma"] = {
                "params": d["gamma_gamma"]["params"],
                "loglik": d["gamma_gamma"]["loglik"],
                "converged": d["gamma_gamma"]["converged"],
                "limit": d["gamma_gamma"].get("limit"),
                "message": "",
            }

    cdnow = read_transactions_file(cdnow_path())
    summary = clv_summary(ibis.memtable(cdnow), date(1997, 10, 1), unit_days=7.0)
    record("cdnow bgnbd", fit_summary(summary, as_of=date(1997, 10, 1), model="bgnbd"))
    trip = summary.to_pandas()
    d = m.Triples.build(trip["frequency"], trip["recency"], trip["T"])
    record("cdnow paretonbd", m.fit_transactions("paretonbd", d))
    x, t_x, T = _homogeneous_dropout_sample()
    record("homogeneous dropout bgnbd", m.fit_transactions("bgnbd", m.Triples.build(x, t_x, T)))
    record("homogeneous spend gamma_gamma", m.fit_gamma_gamma(_homogeneous_spend_sample(seed=1)))
    with tempfile.TemporaryDirectory() as tmp:
        generate(
            Path(tmp), customers=1500, seed=0
        )  # the demo's data set (micromarketing demo --customers 1500)
        tx = pd.read_csv(Path(tmp) / "transactions.csv", usecols=["customer_id", "ordered_at", "amount"])
        tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
        as_of = date(2026, 7, 1)
        record("demo bgnbd", fit_summary(clv_summary(ibis.memtable(tx), as_of, unit_days=7.0), as_of=as_of))
        generate(Path(tmp), customers=20_000, seed=0)  # the default generated workspace
        tx = pd.read_csv(Path(tmp) / "transactions.csv", usecols=["customer_id", "ordered_at", "amount"])
        tx["ordered_at"] = pd.to_datetime(tx["ordered_at"], utc=True)
        big = clv_summary(ibis.memtable(tx), as_of, unit_days=7.0)
        record("generated 20k paretonbd", fit_summary(big, as_of=as_of, model="paretonbd"))
    print(json.dumps(out, default=float))
    del np


def run(kernel: str, tests: bool) -> tuple[dict, str]:
    env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "PYTHONPATH": str(ROOT / "src")}
    fits = subprocess.run(
        [sys.executable, __file__, "--worker"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if fits.returncode != 0:
        return {}, f"fit worker failed: {fits.stderr.strip().splitlines()[-1:]}"
    verdict = "not run"
    if tests:
        t = subprocess.run(
            [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        verdict = (t.stdout.strip().splitlines() or ["?"])[-1]
        verdict = ("PASS " if t.returncode == 0 else "FAIL ") + verdict.strip("= ")
    return json.loads(fits.stdout), verdict


def main() -> int:
    if "--worker" in sys.argv:
        worker()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-tests", action="store_true", help="only compare the fits")
    args = parser.parse_args()
    flags = cpu_flags()
    results: dict[str, dict] = {}
    ok = True
    for kernel, needs in KERNELS.items():
        if needs is not None and needs not in flags:
            print(f"== {kernel}: skipped (CPU lacks {needs})")
            continue
        fits, verdict = run(kernel, not args.no_tests)
        print(f"== {kernel}: tests {verdict}")
        ok &= not verdict.startswith("FAIL") and bool(fits)
        for name, f in fits.items():
            params = ", ".join(f"{k}={v:.9g}" for k, v in f["params"].items())
            limit = f" limit={f['limit']}" if f["limit"] else ""
            why = "" if f["converged"] or not f["message"] else f" ({f['message']})"
            print(f"   {name:28s} {params}  loglik={f['loglik']:.6f} converged={f['converged']}{limit}{why}")
        results[kernel] = fits
    base_kernel = next(iter(results), None)
    if base_kernel is None:
        print("no kernel ran")
        return 1
    base = results[base_kernel]
    for kernel, fits in results.items():
        for name, f in base.items():
            g = fits.get(name)
            same = (
                g is not None
                and g["converged"] == f["converged"]
                and g["limit"] == f["limit"]
                and set(g["params"]) == set(f["params"])
                and all(abs(g["params"][k] - v) <= RELATIVE * abs(v) for k, v in f["params"].items())
            )
            if not same:
                ok = False
                print(f"DIFFERENT: {name} under {kernel} vs {base_kernel}")
            ok &= bool(f["converged"])
    print(
        f"PASS: {len(results)} kernels, every fit converged and equal to {RELATIVE:g} relative"
        if ok
        else "FAIL: see above"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
