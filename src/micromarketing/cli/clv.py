"""`micromarketing clv`: fit the lifetime-value models and validate them on a holdout period."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from micromarketing import clv_validation_report, read_transactions_file, validate_clv
from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.workspace import Workspace

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
@command(view=views.clv_fit, as_json=views.to_dict)
def fit(
    ws: Workspace,
    as_of: DateOption = None,
    model: ModelOption = "bgnbd",
    by: ByOption = None,
    min_group_size: MinGroupOption = None,
):
    """Fit the transaction and spend models on the warehouse and store them as a new version."""
    return ws.clv.fit(
        as_of=as_of.date() if as_of else None, model=model, by=by, min_group_size=min_group_size
    )


@app.command("backtest")
@command(view=views.clv_backtest, as_json=views.to_dict)
def backtest(
    ws: Workspace,
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
):
    """Fit on the calibration period of the workspace and compare holdout repeat transactions, per group."""
    return ws.clv.backtest(
        calibration_end.date(),
        holdout_end.date() if holdout_end else None,
        by=by,
        model=model,
        min_group_size=min_group_size,
    )


@app.command("validate")
@command(view=views.clv_validation, as_json=views.clv_validation_json)
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
):
    """Fit on the calibration period and compare holdout repeat transactions with the predictions."""
    result = validate_clv(read_transactions_file(transactions), calibration_end.date(), holdout_end.date())
    if report is not None:
        clv_validation_report(result).write(report)
    return result
