"""`micromarketing demo`: the whole loop on generated data, with a summary of each step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from micromarketing import DemoReport, run_demo
from micromarketing.cli._common import JsonOption, console, handle_errors, print_json, progress_bar
from micromarketing.cli.profile import rfm_table


@handle_errors
def demo(
    customers: Annotated[int, typer.Option("--customers", min=100, help="Customers to generate.")] = 20_000,
    out: Annotated[Path, typer.Option("--out", help="Directory for the data and the workspace.")] = Path(
        "demo-workspace"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data generator.")] = 7,
    json_output: JsonOption = False,
) -> None:
    """Generate data, then ingest, fit CLV, profile, segment and personalise (the main job)."""
    with progress_bar(not json_output) as progress:
        report = run_demo(out, customers=customers, seed=seed, progress=progress)
    if json_output:
        print_json(_as_json(report))
        return
    _print_report(report)


def _print_report(report: DemoReport) -> None:
    ingest = Table(title="1. Ingest")
    for column in ("file", "accepted", "rejected"):
        ingest.add_column(column, justify="left" if column == "file" else "right")
    for result in report.ingested:
        ingest.add_row(result.path.name, f"{result.accepted:,}", f"{result.rejected:,}")
    console.print(ingest)

    if report.clv is not None:
        fit = report.clv
        params = ", ".join(f"{k}={v:.3g}" for k, v in fit.params.items())
        spend = ", ".join(f"{k}={v:.3g}" for k, v in fit.spend_params.items())
        console.print(
            f"[bold]2. Customer value[/]: {fit.model} {params}; Gamma-Gamma {spend}; "
            f"log-lik {fit.loglik:,.1f}; {fit.n_customers:,} customers; "
            f"converged={fit.converged and fit.spend_converged}"
        )
    currency = report.profile.currency if report.profile else None
    if report.rfm is not None:
        console.print(rfm_table(report.rfm, currency))
    if report.value_tiers is not None:
        console.print(_frame_table("Value tiers (12-month CLV)", report.value_tiers, currency))

    segments = Table(title="3. Rule segments")
    for column in ("segment", "members", "warnings"):
        segments.add_column(column)
    for m in report.rule_segments:
        segments.add_row(m.segment, f"{m.size:,}", "; ".join(m.warnings) or "-")
    console.print(segments)
    if report.discovery is not None:
        d = report.discovery
        personas = Table(title=f"Discovered micro-segments (k={d.k}, {d.criterion})")
        for column in ("segment", "persona", "size", "share", "revenue share"):
            personas.add_column(
                column, justify="right" if column in {"size", "share", "revenue share"} else "left"
            )
        for seg in d.segments:
            p = seg.persona
            personas.add_row(seg.name, p.name, f"{p.size:,}", f"{p.share:.1%}", f"{p.revenue_share:.1%}")
        console.print(personas)

    if report.recommendations is not None:
        console.print(_frame_table("4. Recommendations (sample)", report.recommendations, None))
    if report.offers is not None:
        console.print(_frame_table("Next best offer (sample)", report.offers, currency))
    if report.template_check is not None:
        check = report.template_check
        console.print(
            f"Template [bold]{check.template}[/] rendered for {check.rendered:,}/{check.recipients:,} "
            f"members of {check.segment}: {len(check.failures)} failures (nothing sent)"
        )
    timings = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in report.timings.items())
    console.print(f"Workspace: [bold]{report.workspace}[/]  ({timings})")


def _frame_table(title: str, frame: pd.DataFrame, currency: str | None) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.2f}"
    return "-" if value is None else str(value)


def _as_json(report: DemoReport) -> dict[str, Any]:
    def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        return [] if frame is None else frame.astype(object).where(frame.notna(), None).to_dict("records")

    return {
        "workspace": report.workspace,
        "ingested": [r.__dict__ for r in report.ingested],
        "clv": report.clv.__dict__ if report.clv else None,
        "profile": report.profile.__dict__ if report.profile else None,
        "rfm_segments": records(report.rfm),
        "value_tiers": records(report.value_tiers),
        "rule_segments": [m.__dict__ for m in report.rule_segments],
        "discovered": report.discovery.to_dict() if report.discovery else None,
        "recommendations": records(report.recommendations),
        "offers": records(report.offers),
        "template_check": report.template_check.__dict__ if report.template_check else None,
        "timings_s": report.timings,
    }
