"""The calibration/holdout protocol of Fader, Hardie & Lee for the CLV models, and its report.

This module owns ``clv validate``: read a transaction log (the CDNOW text files shipped in the
``lifetimes`` wheel, or a CSV/Parquet/JSONL file with ``customer_id``, ``ordered_at`` and
``amount``), summarise the calibration period with the same SQL as the workspace models
(:func:`micromarketing.profiles.clv.clv_summary`), fit BG/NBD, Pareto/NBD and Gamma-Gamma, and
compare the holdout period's repeat transactions with the models' predictions: the total, the
weekly cumulative curve and the conditional expectations by calibration frequency (0..7+).

``calibration_end`` and ``holdout_end`` are inclusive days, as in the papers (CDNOW: calibration
1997-01-01..1997-09-30, holdout to 1998-06-30, time in weeks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd

from micromarketing.datasets.cdnow import cdnow_source
from micromarketing.errors import DataError, IngestError, ModelError
from micromarketing.profiles import clv_models as m
from micromarketing.profiles.clv import clv_summary, fit_summary, purchase_days, summary_triples

UNIT_DAYS = 7.0
FREQUENCY_BINS = 8  # 0..6 and 7+

# Published estimates on the CDNOW 1/10th sample (2,357 customers; calibration 1997-01-01..09-30, weeks).
PUBLISHED = {
    # Fader, Hardie & Lee (2005), "Counting Your Customers" the Easy Way: An Alternative to the
    # Pareto/NBD Model, Marketing Science 24(2), 275-284, section 4.
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "loglik": -9582.4},
    # Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions"
    # (and FHL 2005 above, which reports the Pareto/NBD fit to the same data).
    "paretonbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669, "loglik": -9595.0},
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (946 repeat customers).
    "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}


def cdnow_path(kind: Literal["master", "sample"] = "sample") -> Path:
    """The shipped CDNOW sample (or master) log: the validation's default input."""
    return cdnow_source(kind)


def read_transactions_file(path: str | Path) -> pd.DataFrame:
    """Read a transaction log into ``customer_id, ordered_at, amount`` (naive day timestamps).

    Accepts the CDNOW text layout (whitespace-separated: ``[id] customer date YYYYMMDD cds
    dollars``, with or without a header) and CSV/Parquet/JSONL files with ``customer_id``, a
    date column (``ordered_at`` or ``date``) and an amount column (``amount`` or ``dollar_value``).
    """
    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: file not found")
    suffix = p.suffix.lower()
    if suffix == ".txt":
        raw = pd.read_csv(p, sep=r"\s+", header=None, dtype=str, engine="python")
        if not raw.iloc[0, -1].replace(".", "", 1).isdigit():
            raw = raw.iloc[1:]
        if raw.shape[1] == 5:  # sample file: master id, sample id, date, cds, dollars
            cols = {0: "customer_id", 2: "date", 4: "amount"}
        elif raw.shape[1] == 4:  # master file: id, date, cds, dollars
            cols = {0: "customer_id", 1: "date", 3: "amount"}
        else:
            raise IngestError(f"{p}: expected 4 or 5 whitespace-separated columns, found {raw.shape[1]}")
        df = raw[list(cols)].rename(columns=cols)
    elif suffix in {".csv", ".gz"}:
        df = pd.read_csv(p, dtype=str)
    elif suffix == ".parquet":
        df = pd.read_parquet(p)
    elif suffix in {".jsonl", ".ndjson", ".json"}:
        df = pd.read_json(p, lines=True, dtype=False)
    else:
        raise IngestError(f"{p}: unsupported file type {suffix!r} (use .txt, .csv, .parquet or .jsonl)")
    date_col = next((c for c in ("ordered_at", "date") if c in df.columns), None)
    amount_col = next((c for c in ("amount", "dollar_value") if c in df.columns), None)
    for needed, found in (
        ("customer_id", "customer_id" if "customer_id" in df.columns else None),
        ("ordered_at", date_col),
        ("amount", amount_col),
    ):
        if found is None:
            raise IngestError(f"{p}: missing column {needed!r}")
    out = pd.DataFrame({"customer_id": df["customer_id"].astype(str).str.strip()})
    dates = df[date_col]
    parsed = pd.to_datetime(dates.astype(str), format="%Y%m%d", errors="coerce")
    if parsed.isna().any():
        parsed = pd.to_datetime(dates, errors="coerce", utc=True).dt.tz_localize(None)
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise IngestError(f"{p}: row {row + 1}, field {date_col!r}: cannot parse date {dates.iloc[row]!r}")
    out["ordered_at"] = parsed.dt.normalize()
    amount = pd.to_numeric(df[amount_col], errors="coerce")
    if amount.isna().any():
        row = int(np.flatnonzero(amount.isna().to_numpy())[0])
        raise IngestError(
            f"{p}: row {row + 1}, field {amount_col!r}: not a number {df[amount_col].iloc[row]!r}"
        )
    out["amount"] = amount.astype(float)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class ValidationResult:
    """Everything ``clv validate`` prints or plots."""

    payload: dict[str, Any]
    curve: pd.DataFrame  # week, actual, bgnbd, paretonbd (cumulative repeat transactions)
    by_frequency: pd.DataFrame  # frequency bin, customers, actual, bgnbd, paretonbd (holdout averages)
    calibration_weeks: float


def validate(
    transactions: pd.DataFrame,
    calibration_end: date,
    holdout_end: date,
    *,
    unit_days: float = UNIT_DAYS,
    is_cdnow: bool | None = None,
) -> ValidationResult:
    """Fit on the calibration period and compare holdout repeat transactions with predictions.

    Predictions "from published parameters" (FHL 2005, Fader & Hardie 2013) are only made for the
    CDNOW sample, the data those parameters were estimated on: ``is_cdnow`` (default: detected
    from the 2,357 customers and first purchases in 1997-01-01..03-31 of the sample).
    """
    if holdout_end <= calibration_end:
        raise DataError(
            f"--holdout-end {holdout_end.isoformat()} must be after --calibration-end {calibration_end.isoformat()}"  # noqa: E501
        )
    as_of = calibration_end + timedelta(days=1)
    tx = ibis.memtable(transactions[["customer_id", "ordered_at", "amount"]])
    summary_expr = clv_summary(tx, as_of, unit_days=unit_days)
    summary = summary_expr.to_pandas().sort_values("customer_id").reset_index(drop=True)
    if summary.empty:
        raise DataError(f"no transactions on or before {calibration_end.isoformat()}")
    bg = fit_summary(summary_expr, as_of=as_of, model="bgnbd", unit_days=unit_days)
    trip = summary_triples(summary_expr).to_pandas()
    triples = m.Triples.build(trip["frequency"], trip["recency"], trip["T"], trip["n"], collapse=False)
    pn = m.fit_transactions("paretonbd", triples)
    bg_model, pn_model = bg.transaction_model, pn.transaction_model
    if is_cdnow is None:
        is_cdnow = _looks_like_cdnow_sample(transactions, summary, calibration_end)

    days = purchase_days(tx, holdout_end + timedelta(days=1)).to_pandas()
    days["day"] = pd.to_datetime(days["day"])
    cal_end_ts = pd.Timestamp(calibration_end)
    in_cal = set(summary["customer_id"])
    hold = days[(days["day"] > cal_end_ts) & days["customer_id"].isin(in_cal)]
    x_star = hold.groupby("customer_id").size().reindex(summary["customer_id"], fill_value=0).to_numpy()

    x = summary["frequency"].to_numpy(np.float64)
    t_x = summary["recency"].to_numpy(np.float64)
    T = summary["T"].to_numpy(np.float64)
    horizon = ((holdout_end - calibration_end).days) / unit_days
    with np.errstate(all="ignore"):
        pred_bg = bg_model.conditional_expected(bg.vector, horizon, x, t_x, T)
        pred_pn = pn_model.conditional_expected(pn.vector, horizon, x, t_x, T)
        published: dict[str, float] = {}
        if is_cdnow:
            published = {
                "predicted_bgnbd_published_params": float(
                    m.bgnbd_conditional_expected(_vec("bgnbd"), horizon, x, t_x, T).sum()
                ),
                "predicted_paretonbd_published_params": float(
                    m.paretonbd_conditional_expected(_vec("paretonbd"), horizon, x, t_x, T).sum()
                ),
            }

    bins = np.minimum(x, FREQUENCY_BINS - 1).astype(int)
    by_freq = pd.DataFrame({"bin": bins, "actual": x_star, "bgnbd": pred_bg, "paretonbd": pred_pn})
    by_freq = (
        by_freq.groupby("bin")
        .agg(
            customers=("actual", "size"),
            actual=("actual", "mean"),
            bgnbd=("bgnbd", "mean"),
            paretonbd=("paretonbd", "mean"),
        )
        .reindex(range(FREQUENCY_BINS))
        .reset_index()
    )
    by_freq["frequency"] = [str(i) if i < FREQUENCY_BINS - 1 else f"{i}+" for i in by_freq["bin"]]

    # Weekly cumulative repeat transactions, calibration start to holdout end.
    first = days[days["customer_id"].isin(in_cal)].groupby("customer_id")["day"].min()
    start = first.min()
    cohorts = first.value_counts()
    cohort_age0 = ((cohorts.index - start).days.to_numpy(np.float64)) / unit_days
    cohort_n = cohorts.to_numpy(np.float64)
    n_weeks = int(np.ceil(((pd.Timestamp(holdout_end) - start).days + 1) / unit_days))
    weeks = np.arange(1, n_weeks + 1, dtype=np.float64)
    repeat_days = days[days["customer_id"].isin(in_cal) & (days["day_no"] > 0)]
    rep_week = ((repeat_days["day"] - start).dt.days.to_numpy() // unit_days).astype(int)
    actual_weekly = np.bincount(rep_week, minlength=n_weeks)[:n_weeks]
    ages = np.maximum(weeks[:, None] - cohort_age0[None, :], 0.0)
    with np.errstate(all="ignore"):
        cum_bg = (bg_model.expected(bg.vector, ages) * cohort_n).sum(axis=1)
        cum_pn = (pn_model.expected(pn.vector, ages) * cohort_n).sum(axis=1)
    curve = pd.DataFrame(
        {
            "week": weeks.astype(int),
            "actual": np.cumsum(actual_weekly),
            "bgnbd": cum_bg,
            "paretonbd": cum_pn,
        }
    )
    cal_weeks = ((pd.Timestamp(as_of) - start).days) / unit_days
    # Unconditional holdout totals (the cumulative curve's increase over the holdout).
    ages_T = T
    with np.errstate(all="ignore"):
        unc_bg = float(
            np.sum(bg_model.expected(bg.vector, ages_T + horizon) - bg_model.expected(bg.vector, ages_T))
        )
        unc_pn = float(
            np.sum(pn_model.expected(pn.vector, ages_T + horizon) - pn_model.expected(pn.vector, ages_T))
        )

    payload: dict[str, Any] = {
        "calibration_end": calibration_end.isoformat(),
        "holdout_end": holdout_end.isoformat(),
        "time_unit_days": unit_days,
        "n_customers": int(len(summary)),
        "n_repeaters": int((summary["frequency"] > 0).sum()),
        "calibration_repeat_transactions": int(summary["frequency"].sum()),
        "bgnbd": {
            **bg.params,
            "loglik": bg.loglik,
            "converged": bg.converged,
            "std_errors": bg.std_errors,
            **({"limit": bg.limit} if bg.limit else {}),
        },
        "paretonbd": {
            **pn.params,
            "loglik": pn.loglik,
            "converged": pn.converged,
            "std_errors": pn.std_errors,
            **({"limit": pn.limit} if pn.limit else {}),
        },
        "gamma_gamma": {
            **bg.spend_params,
            "loglik": bg.spend_loglik,
            "converged": bg.spend_converged,
            "std_errors": bg.spend_std_errors,
            "n_customers": bg.n_repeaters,
            **({"limit": bg.spend_limit} if bg.spend_limit else {}),
        },
        "holdout": {
            "weeks": horizon,
            "actual": int(x_star.sum()),
            "predicted_bgnbd": float(pred_bg.sum()),
            "predicted_paretonbd": float(pred_pn.sum()),
            **published,
            "unconditional_bgnbd": unc_bg,
            "unconditional_paretonbd": unc_pn,
        },
        "by_frequency": [
            {
                "frequency": row.frequency,
                "customers": int(row.customers) if row.customers == row.customers else 0,
                "actual": _num(row.actual),
                "bgnbd": _num(row.bgnbd),
                "paretonbd": _num(row.paretonbd),
            }
            for row in by_freq.itertuples()
        ],
    }
    if is_cdnow:
        payload["published"] = PUBLISHED
    return ValidationResult(payload=payload, curve=curve, by_frequency=by_freq, calibration_weeks=cal_weeks)


def _looks_like_cdnow_sample(
    transactions: pd.DataFrame, summary: pd.DataFrame, calibration_end: date
) -> bool:
    """The CDNOW 1/10th sample: 2,357 customers, all acquired in the first quarter of 1997."""
    first = pd.to_datetime(transactions["ordered_at"]).min()
    return (
        len(summary) == 2357
        and calibration_end == date(1997, 9, 30)
        and pd.Timestamp("1997-01-01") <= first < pd.Timestamp("1997-01-02")
    )


def _vec(model: str) -> np.ndarray:
    return np.array([PUBLISHED[model][k] for k in m.PARAM_NAMES[model]])


def _num(v: float) -> float | None:
    return None if v != v else float(v)


__all__ = [
    "PUBLISHED",
    "ValidationResult",
    "cdnow_path",
    "read_transactions_file",
    "validate",
    "ModelError",
]
