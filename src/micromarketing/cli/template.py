"""`micromarketing template`: store, list, preview and check sandboxed message templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.errors import TemplateError
from micromarketing.workspace import Workspace

app = typer.Typer(
    help="Message templates (subject, HTML, text, SMS) in a Jinja2 sandbox.", no_args_is_help=True
)

ExtraOption = Annotated[
    str | None, typer.Option("--vars", help='Constant variables as JSON, e.g. \'{"brand": "Maison"}\'.')
]
KOption = Annotated[int, typer.Option("--k", min=0, max=50, help="Recommendations per recipient.")]
VersionOption = Annotated[int | None, typer.Option("--version", help="Template version (default: latest).")]


def _extra(value: str | None) -> dict[str, Any] | None:
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
@command(view=views.template_added, as_json=views.template_json)
def add(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Template name (letters, digits, '_' or '-').")],
    files: Annotated[list[Path], typer.Argument(help="Part files: *.subject, *.html, *.txt, *.sms.")],
):
    """Store a new version of template NAME from its part files (compiled and checked first)."""
    return ws.templates.add(name, files)


@app.command("add-block")
@command(view=views.template_blocks, as_json=views.versions_json)
def add_block(
    ws: Workspace,
    files: Annotated[
        list[Path], typer.Argument(help="Shared block files, named as included (header.html …).")
    ],
):
    """Store shared blocks (header, footer, product card …) that templates include by file name."""
    return [ws.templates.add_block(f) for f in files]


@app.command("examples")
@command(view=views.template_version, as_json=views.version_json)
def examples(ws: Workspace):
    """Store the shipped example campaign template (seasonal_picks)."""
    return ws.templates.install_examples()


@app.command("list")
@command(view=views.template_list, as_json=views.template_list_json)
def list_(ws: Workspace):
    """Stored templates and blocks (latest versions)."""
    return ws.templates.list()


@app.command("preview")
@command(view=views.message, as_json=views.message_json)
def preview(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Template name.")],
    customer: Annotated[str, typer.Option("--customer", "-c", help="Render for this customer id.")],
    segment: Annotated[
        str | None, typer.Option("--segment", "-s", help="Segment whose persona to use.")
    ] = None,
    k: KOption = 5,
    version: VersionOption = None,
    extra: ExtraOption = None,
):
    """Render template NAME for one real customer (nothing is sent)."""
    return ws.templates.preview(name, customer, k=k, version=version, segment=segment, extra=_extra(extra))


@app.command("check")
@command(view=views.template_check, as_json=views.template_check_json, exit_code=lambda r: 0 if r.ok else 1)
def check(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Template name.")],
    segment: Annotated[str, typer.Option("--segment", "-s", help="Render for every member of this segment.")],
    k: KOption = 5,
    version: VersionOption = None,
    extra: ExtraOption = None,
):
    """Render NAME for every member of a segment and report failures, without sending anything."""
    return ws.templates.check(name, segment, k=k, version=version, extra=_extra(extra))
