"""`micromarketing campaign`: plan, run, test, status and list campaigns from YAML files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from micromarketing import EXAMPLE_CAMPAIGN
from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
    progress_bar,
)
from micromarketing.errors import ConflictError

app = typer.Typer(help="Campaigns: plan, run, proofs, status.", no_args_is_help=True)

FileArgument = Annotated[Path, typer.Argument(help="The campaign YAML file.")]


def _money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


@app.command("plan")
@handle_errors
def plan(file: FileArgument, workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Members, control, policy removals, reach, cost, expected returns and power per segment,
    variant and channel. Sends and writes nothing."""
    with open_workspace(workspace) as ws:
        result = ws.campaigns.plan(file)
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{escape(result.name)}[/]: {result.members} members, {result.control} in control, "
        f"{result.global_holdout} in the global holdout, [bold]{result.reach}[/] messages "
        f"({result.deferred} deferred by quiet hours)"
    )
    reach = Table(
        "segment/variant",
        "channel",
        "members",
        "no consent",
        "suppressed",
        "capped",
        "no address",
        "deferred",
        "reach",
        title="Reach",
    )
    money = Table(
        "segment/variant",
        "cost",
        "conversions",
        "revenue",
        "ROI",
        "MDE abs.",
        "MDE rel.",
        title="Expected returns",
    )
    for seg in result.segments:
        for v in seg.variants:
            label = escape(f"{seg.segment}/{v.variant}")
            reach.add_row(
                label,
                v.channel,
                str(v.members),
                str(v.removed.get("no_consent", 0)),
                str(v.removed.get("suppressed", 0)),
                str(v.removed.get("frequency_cap", 0)),
                str(v.removed.get("no_address", 0)),
                str(v.deferred),
                str(v.reach),
            )
            money.add_row(
                label,
                _money(v.cost),
                f"{v.expected_conversions:.1f}",
                _money(v.expected_revenue),
                _share(v.roi),
                _share(v.mde_absolute),
                _share(v.mde_relative),
            )
    console.print(reach)
    console.print(money)
    for seg in result.segments:
        console.print(
            f"{escape(seg.segment)}: {seg.members} members, {seg.control} control, "
            f"{seg.global_holdout} global holdout, {seg.in_earlier_segment} already in an earlier segment"
        )
    budget = f" of a budget of {_money(result.budget)}" if result.budget is not None else ""
    console.print(
        f"Cost {_money(result.cost)}{budget}; expected {result.expected_conversions:.1f} conversions, "
        f"revenue {_money(result.expected_revenue)}, margin {_money(result.expected_margin)}, "
        f"ROI {_share(result.roi)}"
    )
    console.print("[bold]Assumptions[/]")
    for line in result.assumptions:
        console.print(f"  • {escape(line)}", soft_wrap=True)
    for line in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _deliver(ws: Any, name: str) -> Any:
    """Run the delivery worker for campaign ``name``."""
    return ws.delivery.deliver(campaign=name)


@app.command("example")
@handle_errors
def example(
    out: Annotated[Path, typer.Option("--out", help="Where to write the campaign file.")] = Path(
        "spring_winback.yaml"
    ),
) -> None:
    """Write an example campaign file (two segments, a control group, two variants, a budget) to edit."""
    if out.exists():
        raise ConflictError(f"{out} exists; choose another --out")
    out.write_text(EXAMPLE_CAMPAIGN, encoding="utf-8")
    console.print(f"Wrote [bold]{out}[/]: edit segments, templates and offers; then `campaign plan {out}`")


@app.command("run")
@handle_errors
def run(
    file: FileArgument,
    no_deliver: Annotated[
        bool, typer.Option("--no-deliver", help="Only assign and fill the outbox; send later.")
    ] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Assign every member to control or a variant and write one outbox row per message, then
    deliver (unless --no-deliver). Running the same file again sends nothing twice."""
    with open_workspace(workspace) as ws:
        with progress_bar(enabled=not json_output) as progress:
            result = ws.campaigns.run(file, progress=progress)
        report = None if no_deliver else _deliver(ws, result.name)
    if json_output:
        payload = result.model_dump(mode="json")
        payload["delivery"] = report.model_dump(mode="json") if report is not None else None
        print_json(payload)
        return
    console.print(escape(result.message))
    console.print(
        f"{result.members} members: {result.control} control, {result.global_holdout} global holdout; "
        f"{result.pending} pending ({result.deferred} deferred by quiet hours), {result.skipped} skipped"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(result.skipped_by_rule.items())) + ")"
            if result.skipped_by_rule
            else ""
        )
    )
    if report is not None:
        console.print(f"Delivered: {escape(str(report))}", soft_wrap=True)
    elif not no_deliver:
        console.print("Delivery runs with `micromarketing deliver`.")


@app.command("test")
@handle_errors
def test(
    file: FileArgument,
    to: Annotated[list[str], typer.Option("--to", help="Seed address (repeat for several).")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Queue a proof of each variant to the seed addresses (marked as tests: outside caps and
    measurement); `micromarketing deliver` sends them."""
    with open_workspace(workspace) as ws:
        result = ws.campaigns.test(file, to)
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    console.print(f"{result.messages} proofs queued ({', '.join(result.variants)}) to {', '.join(result.to)}")
    for line in result.skipped:
        err_console.print(f"[yellow]skipped:[/] {escape(line)}")


@app.command("status")
@handle_errors
def status(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Outbox counts per state and the control group of campaign NAME."""
    with open_workspace(workspace) as ws:
        result = ws.campaigns.status(name)
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    table = Table("state", "messages")
    for state in ("pending", "sending", "sent", "deferred", "failed", "skipped", "control", "global_holdout"):
        table.add_row(state, str(getattr(result, state)))
    console.print(f"[bold]{escape(result.name)}[/] ({result.status}), {result.members} members")
    console.print(table)


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Every campaign with its status, members and messages."""
    with open_workspace(workspace) as ws:
        result = ws.campaigns.list()
    if json_output:
        print_json([c.model_dump(mode="json") for c in result])
        return
    table = Table("name", "status", "priority", "members", "messages", "created")
    for c in result:
        table.add_row(
            escape(c.name),
            c.status,
            str(c.priority),
            str(c.members),
            str(c.messages),
            c.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
