"""`micromarketing clv`: fit the lifetime-value models and validate them on a holdout period."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from micromarketing import clv_validation_report, read_transactions_file, validate_clv
from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="Customer lifetime value: BG/NBD or Pareto/NBD with Gamma-Gamma spend.", no_args_is_help=True
)

DateOption = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Use transactions before this date (default: all)."),
]


ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Fit one model per group: 'segments' (discovered segments) or a customers column, e.g. region.",
    ),
]
MinGroupOption = Annotated[
    int | None,
    typer.Option("--min-group-size", min=1, help="Smaller groups use the pooled fit (default 500)."),
]
ModelOption = Annotated[str, typer.Option("--model", help="Transaction model: bgnbd or paretonbd.")]


@app.command("fit")
@handle_errors
def fit(
    as_of: DateOption = None,
    model: ModelOption = "bgnbd",
    by: ByOption = None,
    min_group_size: MinGroupOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fit the transaction and spend models on the warehouse and store them as a new version."""
    with open_workspace(workspace) as ws:
        result = ws.clv.fit(
            as_of=as_of.date() if as_of else None, model=model, by=by, min_group_size=min_group_size
        )
    if json_output:
        print_json(result.to_dict())
        return
    title = f"CLV model v{result.version}: {result.model} + Gamma-Gamma, as of {result.as_of} (time unit {result.unit_days:g} days)"  # noqa: E501
    table = Table(title=title)
    for col in ("model", "parameter", "estimate", "std. error"):
        table.add_column(col, justify="left" if col in ("model", "parameter") else "right")
    for name, value in result.params.items():
        table.add_row(result.model, name, f"{value:.4f}", f"{result.std_errors[name]:.4f}")
    for name, value in result.spend_params.items():
        table.add_row("gamma_gamma", name, f"{value:.4f}", f"{result.spend_std_errors[name]:.4f}")
    console.print(table)
    if result.limit is not None and result.model == "bgnbd":
        console.print(
            f"dropout is homogeneous: a, b -> infinity (the limit model, {result.limit}); every customer "
            f"drops out with probability p_dropout = {result.params['p_dropout']:.4f} after a purchase"
        )
    elif result.limit is not None:
        console.print(
            f"dropout is homogeneous: s, beta -> infinity (the limit model, {result.limit}); every "
            f"customer's lifetime is exponential with dropout_rate = {result.params['dropout_rate']:.4g} "
            f"per {result.unit_days:g} days"
        )
    if result.spend_limit is not None:
        console.print(
            f"spend is constant per customer: p -> infinity (the limit model, {result.spend_limit}); "
            f"customers' mean spends are inverse-gamma with q = {result.spend_params['q']:.4f}, "
            f"scale = {result.spend_params['scale']:.4f}"
        )
    console.print(
        f"{result.model}: log-likelihood {result.loglik:,.2f}, "
        f"{'converged' if result.converged else '[bold red]NOT converged[/]: ' + result.message}, "
        f"{result.n_customers:,} customers"
    )
    console.print(
        f"gamma_gamma: log-likelihood {result.spend_loglik:,.2f}, "
        f"{'converged' if result.spend_converged else '[bold red]NOT converged[/]'}, "
        f"{result.n_repeaters:,} repeat customers; non-repeaters' spend per purchase "
        f"{result.non_repeater_spend:,.2f} ({result.spend_mean_source.replace('_', ' ')})"
    )
    if result.by is not None:
        groups = Table(
            title=f"Models by {result.by} (groups under {result.min_group_size:,} customers: pooled)"
        )
        for col in ("group", "customers", "model", "parameters", "converged"):
            groups.add_column(col, justify="right" if col == "customers" else "left")
        for g in result.groups:
            own = g.fit
            params = ", ".join(f"{k}={v:.4g}" for k, v in (own or result).params.items())
            groups.add_row(
                g.group,
                f"{g.customers:,}",
                "own" if own else f"pooled ({g.reason})",
                params,
                str(own.converged and own.spend_converged) if own else "",
            )
        console.print(groups)


@app.command("backtest")
@handle_errors
def backtest(
    calibration_end: Annotated[
        datetime,
        typer.Option("--calibration-end", formats=["%Y-%m-%d"], help="Last day of the calibration period."),
    ],
    holdout_end: Annotated[
        datetime | None,
        typer.Option(
            "--holdout-end", formats=["%Y-%m-%d"], help="Last day of the holdout (default: last order day)."
        ),
    ] = None,
    by: ByOption = None,
    model: ModelOption = "bgnbd",
    min_group_size: MinGroupOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fit on the calibration period of the workspace and compare holdout repeat transactions, per group."""
    with open_workspace(workspace) as ws:
        result = ws.clv.backtest(
            calibration_end.date(),
            holdout_end.date() if holdout_end else None,
            by=by,
            model=model,
            min_group_size=min_group_size,
        )
    payload = result.to_dict()
    if json_output:
        print_json(payload)
        return
    table = Table(
        title=f"Holdout repeat transactions, {payload['calibration_end']} < day <= {payload['holdout_end']}"
        + (f", by {payload['by']}" if payload["by"] else "")
    )
    for col in ("group", "customers", "actual", "predicted", "error", "pooled fit", "pooled error"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in [*payload["groups"], {"group": "total", **payload["total"]}]:
        table.add_row(
            row["group"],
            f"{row['customers']:,}",
            f"{row['actual']:,}",
            f"{row['predicted']:,.1f}",
            _error(row["predicted"], row["actual"]),
            f"{row['predicted_pooled']:,.1f}",
            _error(row["predicted_pooled"], row["actual"]),
        )
    console.print(table)


def _error(predicted: float, actual: int) -> str:
    return f"{(predicted - actual) / actual:+.1%}" if actual else "-"


@app.command("validate")
@handle_errors
def validate(
    transactions: Annotated[
        Path, typer.Option("--transactions", help="Transaction log (CDNOW .txt, CSV, Parquet, JSONL).")
    ],
    calibration_end: Annotated[
        datetime,
        typer.Option("--calibration-end", formats=["%Y-%m-%d"], help="Last day of the calibration period."),
    ],
    holdout_end: Annotated[
        datetime, typer.Option("--holdout-end", formats=["%Y-%m-%d"], help="Last day of the holdout period.")
    ],
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report here.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Fit on the calibration period and compare holdout repeat transactions with the predictions."""
    df = read_transactions_file(transactions)
    result = validate_clv(df, calibration_end.date(), holdout_end.date())
    if report is not None:
        clv_validation_report(result).write(report)
    p = result.payload
    if json_output:
        print_json(p)
        return
    table = Table(title=f"Calibration to {p['calibration_end']}, holdout to {p['holdout_end']}")
    for col in ("model", "parameters", "log-likelihood"):
        table.add_column(col)
    table.add_row("BG/NBD", _params(p["bgnbd"]), f"{p['bgnbd']['loglik']:,.2f}")
    table.add_row(
        "Pareto/NBD", _params(p["paretonbd"]), f"{p['paretonbd']['loglik']:,.2f}"
    )
    table.add_row(
        "Gamma-Gamma", _params(p["gamma_gamma"]), f"{p['gamma_gamma']['loglik']:,.2f}"
    )
    console.print(table)
    h = p["holdout"]
    console.print(
        f"{p['n_customers']:,} customers, {p['n_repeaters']:,} repeaters. Holdout repeat transactions: "
        f"actual {h['actual']:,}, BG/NBD {h['predicted_bgnbd']:,.1f}, Pareto/NBD {h['predicted_paretonbd']:,.1f}"  # noqa: E501
    )
    freq = Table(title="Holdout transactions per customer by calibration frequency")
    for col in ("frequency", "customers", "actual", "BG/NBD", "Pareto/NBD"):
        freq.add_column(col, justify="right")
    for row in p["by_frequency"]:
        freq.add_row(
            row["frequency"],
            f"{row['customers']:,}",
            *(f"{row[k] or 0:.3f}" for k in ("actual", "bgnbd", "paretonbd")),
        )
    console.print(freq)
    if report is not None:
        console.print(f"Report written to [bold]{report}[/]")


def _params(values: dict[str, Any]) -> str:
    """The estimated parameters of one model (a limit model has fewer: those with a standard error)."""
    return ", ".join(f"{n}={values[n]:.4g}" for n in values["std_errors"])
