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
        tx_limit = f" (limit: {fit.limit})" if fit.limit else ""
        spend_limit = f" (limit: {fit.spend_limit})" if fit.spend_limit else ""
        console.print(
            f"[bold]2. Customer value[/]: {fit.model} {params}{tx_limit}; Gamma-Gamma {spend}{spend_limit}; "
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
    _print_campaign(report)
    timings = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in report.timings.items())
    console.print(f"Workspace: [bold]{report.workspace}[/]  ({timings})")
    if report.report_file is not None:
        console.print(f"Report: [bold]{report.report_file.path}[/] (open it in a browser)")


def _print_campaign(report: DemoReport) -> None:
    run, delivery = report.campaign, report.delivery
    if run is None or delivery is None:
        return
    console.print(
        f"[bold]5. Campaign {run.name}[/]: {run.members:,} members, {run.control:,} held out as control; "
        f"{run.messages_inserted:,} messages queued, {run.skipped:,} skipped by the contact policy, "
        f"{run.deferred:,} deferred to the end of quiet hours"
    )
    if report.skipped_reasons:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in report.skipped_reasons.items())
        console.print(f"   skipped: {reasons}")
    console.print(
        f"   delivered over SMTP (127.0.0.1): {delivery.sent:,} sent ({report.smtp_received:,} received by "
        f"the server), {delivery.deferred:,} deferred, {delivery.failed:,} failed, {delivery.skipped:,} "
        f"skipped at send time, in {delivery.seconds:.1f} s"
    )
    measurement = report.measurement
    if measurement is None:
        return
    console.print(
        f"[bold]6. Measured[/] {report.responses:,} simulated orders from a known true uplift "
        f"(attribution {measurement.attribution}, {measurement.attribution_days} days)"
    )
    lifts = Table(title="Lift in conversion over control (95% intervals; true lift from the simulation)")
    columns = ("segment", "variant", "SRM p", "control", "treated", "lift", "95% interval", "true", "shrunk")
    for column in columns:
        lifts.add_column(column, justify="left" if column in {"segment", "variant"} else "right")
    for c in measurement.comparisons:
        conv = c.conversion
        true = report.truth.get((c.segment, c.treatment))
        lo, hi = conv.absolute_interval.low, conv.absolute_interval.high
        lifts.add_row(
            c.segment,
            c.treatment,
            _pct(c.srm.p_value, 3),
            _pct(conv.control),
            _pct(conv.treatment),
            _pct(conv.absolute),
            f"{_pct(lo)} … {_pct(hi)}",
            _pct(true),
            _pct(conv.relative_shrunk) + " rel" if conv.relative_shrunk is not None else "-",
        )
    console.print(lifts)
    covered, compared = report.lift_coverage()
    console.print(f"   {covered} of {compared} intervals cover the true lift")
    if report.allocation is not None:
        alloc = Table(title=f"7. Next round's budget ({report.allocation.budget:,.0f})")
        for column in ("segment", "variant", "now", "next", "why"):
            alloc.add_column(column, justify="right" if column in {"now", "next"} else "left")
        for arm in report.allocation.arms:
            alloc.add_row(
                arm.segment, arm.variant, f"{arm.current_share:.0%}", f"{arm.share:.0%}", arm.explanation
            )
        console.print(alloc)


def _pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits == 3 else f"{100 * value:.{digits}f}%"


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
        "campaign": report.campaign,
        "delivery": report.delivery,
        "smtp_received": report.smtp_received,
        "skipped_reasons": report.skipped_reasons,
        "responses": report.responses,
        "true_lifts": [{"segment": s, "variant": v, "lift": x} for (s, v), x in report.truth.items()],
        "measurement": report.measurement,
        "allocation": report.allocation,
        "report": report.report_file.path if report.report_file else None,
        "timings_s": report.timings,
    }
