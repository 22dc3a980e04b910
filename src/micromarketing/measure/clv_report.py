"""The HTML report of a CLV validation (measure sits above profiles, so the report lives here).

It is drawn with the same :class:`~micromarketing.measure.report.Report` and chart module as the
workspace report, so ``clv validate --report`` looks like every other report.
"""

from __future__ import annotations

from typing import Any

from micromarketing.measure.report import Report
from micromarketing.profiles.clv_validate import ValidationResult


def clv_validation_report(result: ValidationResult) -> Report:
    """The HTML report of a CLV validation run: parameters, holdout curve, conditional expectations."""
    p = result.payload
    h = p["holdout"]
    rep = Report(
        title="CLV model validation",
        subtitle=f"Calibration to {p['calibration_end']}, holdout to {p['holdout_end']} "
        f"({h['weeks']:.1f} weeks); time unit {p['time_unit_days']:g} days",
    )
    rep.metrics(
        {
            "customers": p["n_customers"],
            "repeat buyers": p["n_repeaters"],
            "holdout actual": h["actual"],
            "BG/NBD predicted": h["predicted_bgnbd"],
            "Pareto/NBD predicted": h["predicted_paretonbd"],
        }
    )
    rep.heading("Parameters")
    rows: list[list[Any]] = []
    published = p.get("published", {})  # only for the CDNOW sample the parameters were estimated on
    nan = float("nan")
    for model in ("bgnbd", "paretonbd", "gamma_gamma"):
        for name in [k for k in p[model]["std_errors"]]:  # a limit model has fewer parameters
            rows.append(
                [
                    f"{model} {name}",
                    p[model][name],
                    p[model]["std_errors"][name],
                    published.get(model, {}).get(name, nan),
                ]
            )
        rows.append(
            [f"{model} log-likelihood", p[model]["loglik"], nan, published.get(model, {}).get("loglik", nan)]
        )
    rep.table(["parameter", "estimate", "std. error", "published"], rows)
    rep.heading("Cumulative repeat transactions")
    rep.line_chart(
        result.curve["week"],
        {
            "actual": result.curve["actual"],
            "BG/NBD": result.curve["bgnbd"],
            "Pareto/NBD": result.curve["paretonbd"],
        },
        title="Cumulative repeat transactions: actual against both models",
        xlabel="week",
        ylabel="cumulative repeat transactions",
        vline=result.calibration_weeks,
        vline_label="end of calibration",
        caption="Weekly cumulative repeat transactions; the dashed line marks the end of calibration.",
    )
    rep.heading("Conditional expectations")
    bf = result.by_frequency.fillna(0.0)
    rep.bar_chart(
        list(bf["frequency"]),
        {"actual": bf["actual"], "BG/NBD": bf["bgnbd"], "Pareto/NBD": bf["paretonbd"]},
        title="Holdout transactions per customer by calibration frequency",
        xlabel="repeat transactions in calibration",
        ylabel="mean holdout transactions",
        caption="Holdout repeat transactions per customer by calibration-period frequency.",
    )
    rep.table(
        ["calibration frequency", "customers", "actual", "BG/NBD", "Pareto/NBD"],
        [[r.frequency, int(r.customers), r.actual, r.bgnbd, r.paretonbd] for r in bf.itertuples()],
    )
    return rep
