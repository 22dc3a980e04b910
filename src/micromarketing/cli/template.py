"""`micromarketing template`: store, list, preview and check sandboxed message templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from micromarketing.cli._common import (
    JsonOption,
    WorkspaceOption,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="Message templates (subject, HTML, text, SMS) in a Jinja2 sandbox.", no_args_is_help=True
)

ExtraOption = Annotated[
    str | None, typer.Option("--vars", help='Constant variables as JSON, e.g. \'{"brand": "Maison"}\'.')
]


def _extra(value: str | None) -> dict | None:
    from micromarketing.errors import TemplateError

    if not value:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"--vars: not JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise TemplateError("--vars: give a JSON object")
    return data


@app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="Template name (letters, digits, '_' or '-').")],
    files: Annotated[list[Path], typer.Argument(help="Part files: *.subject, *.html, *.txt, *.sms.")],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store a new version of template NAME from its part files (compiled and checked first)."""
    with open_workspace(workspace) as ws:
        info = ws.templates.add(name, files)
    if json_output:
        print_json(
            {
                "name": info.name,
                "version": info.version,
                "parts": sorted(info.parts),
                "variables": info.variables,
            }
        )
        return
    console.print(
        f"Template [bold]{info.name}[/] v{info.version}: parts {', '.join(sorted(info.parts))}; "
        f"reads {', '.join(info.variables) or 'nothing'}"
    )


@app.command("add-block")
@handle_errors
def add_block(
    files: Annotated[
        list[Path], typer.Argument(help="Shared block files, named as included (header.html …).")
    ],
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store shared blocks (header, footer, product card …) that templates include by file name."""
    with open_workspace(workspace) as ws:
        infos = [ws.templates.add_block(f) for f in files]
    if json_output:
        print_json([{"name": i.name, "version": i.version} for i in infos])
        return
    for i in infos:
        console.print(f"Block [bold]{i.name}[/] v{i.version}")


@app.command("examples")
@handle_errors
def examples(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Store the shipped example campaign template (seasonal_picks)."""
    with open_workspace(workspace) as ws:
        info = ws.templates.install_examples()
    if json_output:
        print_json({"name": info.name, "version": info.version})
        return
    console.print(f"Template [bold]{info.name}[/] v{info.version}")


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Stored templates and blocks (latest versions)."""
    with open_workspace(workspace) as ws:
        infos = ws.templates.list()
    if json_output:
        print_json(
            [
                {
                    "name": i.name,
                    "version": i.version,
                    "kind": i.kind,
                    "parts": sorted(i.parts),
                    "variables": i.variables,
                }
                for i in infos
            ]
        )
        return
    table = Table("name", "version", "kind", "parts", "variables")
    for i in infos:
        table.add_row(i.name, str(i.version), i.kind, ", ".join(sorted(i.parts)), ", ".join(i.variables))
    console.print(table)


@app.command("preview")
@handle_errors
def preview(
    name: Annotated[str, typer.Argument(help="Template name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Render for this customer id.")],
    segment: Annotated[
        str | None, typer.Option("--segment", "-s", help="Segment whose persona to use.")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=0, max=50, help="Recommendations per recipient.")] = 5,
    version: Annotated[
        int | None, typer.Option("--version", help="Template version (default: latest).")
    ] = None,
    extra: ExtraOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Render template NAME for one real customer (nothing is sent)."""
    with open_workspace(workspace) as ws:
        msg = ws.templates.preview(name, customer, k=k, version=version, segment=segment, extra=_extra(extra))
    if json_output:
        print_json(
            {
                "customer_id": msg.customer_id,
                "subject": msg.subject,
                "html": msg.html,
                "text": msg.text,
                "sms": msg.sms,
            }
        )
        return
    for part in ("subject", "text", "sms", "html"):
        value = getattr(msg, part)
        if value is not None:
            console.rule(part)
            console.print(value, markup=False, highlight=False)


@app.command("check")
@handle_errors
def check(
    name: Annotated[str, typer.Argument(help="Template name.")],
    segment: Annotated[str, typer.Option("--segment", "-s", help="Render for every member of this segment.")],
    k: Annotated[int, typer.Option("--k", min=0, max=50, help="Recommendations per recipient.")] = 5,
    version: Annotated[
        int | None, typer.Option("--version", help="Template version (default: latest).")
    ] = None,
    extra: ExtraOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Render NAME for every member of a segment and report failures, without sending anything."""
    from dataclasses import asdict

    with open_workspace(workspace) as ws:
        report = ws.templates.check(name, segment, k=k, version=version, extra=_extra(extra))
    if json_output:
        print_json(asdict(report) | {"ok": report.ok})
    else:
        console.print(f"{report.rendered:,} of {report.recipients:,} members of [bold]{segment}[/] rendered")
        if report.sms_over_160:
            err_console.print(f"[yellow]warning:[/] {report.sms_over_160} SMS longer than 160 characters")
        for group in report.failure_groups():
            err_console.print(
                f"[red]{group['count']} failed[/] {group['reason']} (e.g. customer {group['example']})",
                highlight=False,
            )
    if not report.ok:
        raise typer.Exit(1)
