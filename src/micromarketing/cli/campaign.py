"""`micromarketing campaign`: plan, run, test, status and list campaigns from YAML files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from micromarketing import EXAMPLE_CAMPAIGN
from micromarketing.cli import views
from micromarketing.cli._common import command, json_mode
from micromarketing.errors import ConflictError
from micromarketing.progress import ProgressCallback
from micromarketing.workspace import Workspace

app = typer.Typer(help="Campaigns: plan, run, proofs, status.", no_args_is_help=True)

FileArgument = Annotated[Path, typer.Argument(help="The campaign YAML file.")]


@app.command("plan")
@command(view=views.campaign_plan, as_json=json_mode)
def plan(ws: Workspace, file: FileArgument):
    """Members, control, policy removals, reach, cost, expected returns and power per segment,
    variant and channel. Sends and writes nothing."""
    return ws.campaigns.plan(file)


@app.command("example")
@command(view=views.campaign_example, json_option=False)
def example(
    out: Annotated[Path, typer.Option("--out", help="Where to write the campaign file.")] = Path(
        "spring_winback.yaml"
    ),
):
    """Write an example campaign file (two segments, a control group, two variants, a budget) to edit."""
    if out.exists():
        raise ConflictError(f"{out} exists; choose another --out")
    out.write_text(EXAMPLE_CAMPAIGN, encoding="utf-8")
    return out


@app.command("run")
@command(view=views.campaign_run, as_json=views.campaign_run_json)
def run(
    ws: Workspace,
    progress: ProgressCallback,
    file: FileArgument,
    no_deliver: Annotated[
        bool, typer.Option("--no-deliver", help="Only assign and fill the outbox; send later.")
    ] = False,
):
    """Assign every member to control or a variant and write one outbox row per message, then
    deliver (unless --no-deliver). Running the same file again sends nothing twice."""
    result = ws.campaigns.run(file, progress=progress)
    return result, None if no_deliver else ws.delivery.deliver(campaign=result.name)


@app.command("test")
@command(view=views.campaign_test, as_json=json_mode)
def test(
    ws: Workspace,
    file: FileArgument,
    to: Annotated[list[str], typer.Option("--to", help="Seed address (repeat for several).")],
):
    """Queue a proof of each variant to the seed addresses (marked as tests: outside caps and
    measurement); `micromarketing deliver` sends them."""
    return ws.campaigns.test(file, to)


@app.command("status")
@command(view=views.campaign_status, as_json=json_mode)
def status(ws: Workspace, name: Annotated[str, typer.Argument(help="Campaign name.")]):
    """Outbox counts per state and the control group of campaign NAME."""
    return ws.campaigns.status(name)


@app.command("list")
@command(view=views.campaign_list, as_json=json_mode)
def list_(ws: Workspace):
    """Every campaign with its status, members and messages."""
    return ws.campaigns.list()
