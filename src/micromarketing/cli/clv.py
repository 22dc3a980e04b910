"""`micromarketing clv`: fit the lifetime-value models and validate them on a holdout period."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

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
from micromarketing.errors import ModelError

app = typer.Typer(
    help="Customer lifetime value: BG/NBD or Pareto/NBD with Gamma-Gamma spend.", no_args_is_help=True
)

DateOption = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Use transactions before this date (default: all)."),
]


@app.command("fit")
@handle_errors
def fit(
    as_of: DateOption = None,
    model: Annotated[str, typer.Option("--model", help="Transaction model: bgnbd or paretonbd.")] = "bgnbd",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fit the transaction and spend models on the warehouse and store them as a new version."""
    if model not in ("bgnbd", "paretonbd"):
        raise ModelError(f"--model: unknown model {model!r} (use bgnbd or paretonbd)")
    chosen: Literal["bgnbd", "paretonbd"] = "bgnbd" if model == "bgnbd" else "paretonbd"
    with open_workspace(workspace) as ws:
        result = ws.clv.fit(as_of=as_of.date() if as_of else None, model=chosen)
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
    console.print(
        f"{result.model}: log-likelihood {result.loglik:,.2f}, "
        f"{'converged' if result.converged else '[bold red]NOT converged[/]'}, {result.n_customers:,} customers"  # noqa: E501
    )
    console.print(
        f"gamma_gamma: log-likelihood {result.spend_loglik:,.2f}, "
        f"{'converged' if result.spend_converged else '[bold red]NOT converged[/]'}, "
        f"{result.n_repeaters:,} repeat customers"
    )


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
    table.add_row("BG/NBD", _params(p["bgnbd"], ("r", "alpha", "a", "b")), f"{p['bgnbd']['loglik']:,.2f}")
    table.add_row(
        "Pareto/NBD", _params(p["paretonbd"], ("r", "alpha", "s", "beta")), f"{p['paretonbd']['loglik']:,.2f}"
    )
    table.add_row(
        "Gamma-Gamma", _params(p["gamma_gamma"], ("p", "q", "gamma")), f"{p['gamma_gamma']['loglik']:,.2f}"
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


def _params(values: dict[str, float], names: tuple[str, ...]) -> str:
    return ", ".join(f"{n}={values[n]:.4g}" for n in names)
