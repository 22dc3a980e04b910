"""`micromarketing segment …`: create, preview, list, export, compare and audit rule segments.

Thin layer over ``ws.segments``; every command accepts ``--json``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from micromarketing.cli import views
from micromarketing.cli._common import Session, command
from micromarketing.errors import RuleError
from micromarketing.workspace import Workspace

app = typer.Typer(
    help="Rule segments: create, preview, list, export members, overlap, SQL, fairness.", no_args_is_help=True
)

AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="Evaluate as of this date (default: the profiles' date)."
    ),
]


def _as_of(value: datetime | None) -> date | None:
    return value.date() if value else None


@app.command()
@command(view=views.segment_created)
def create(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Segment name (letters, digits, '_' or '-').")],
    rule: Annotated[
        str, typer.Option("--rule", "-r", help="The rule, e.g. \"frequency >= 3 and city = 'Lyon'\".")
    ],
    description: Annotated[str, typer.Option("--description", "-d", help="What the segment is for.")] = "",
    allow_sensitive: Annotated[
        bool, typer.Option("--allow-sensitive", help="Allow protected attributes (needs --reason).")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why protected attributes are used (audited).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Add a new version of an existing segment.")
    ] = False,
    as_of: AsOfOption = None,
):
    """Create (or with --replace, re-version) a rule segment and materialise its membership."""
    return ws.segments.create(
        name,
        rule,
        description=description,
        allow_sensitive=allow_sensitive,
        reason=reason,
        as_of=_as_of(as_of),
        replace=replace,
    )


@app.command()
@command(view=views.segment_preview)
def preview(
    session: Session,
    name: Annotated[str | None, typer.Argument(help="A stored segment (or use --rule).")] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", "-r", help="Preview a rule without storing it.")
    ] = None,
    sample: Annotated[int, typer.Option("--sample", min=0, max=1000, help="Sample rows to show.")] = 10,
    as_of: AsOfOption = None,
):
    """Size, share of base, revenue share, average CLV, a sample and the most distinctive fields."""
    if (name is None) == (rule is None):
        raise typer.BadParameter("give a segment NAME or --rule, not both")
    return session.workspace.segments.preview(name, rule=rule, as_of=_as_of(as_of), sample=sample)


@app.command("list")
@command(view=views.segment_list)
def list_(ws: Workspace):
    """All segments with their kind, version, latest size and rule."""
    return ws.segments.list()


@app.command()
@command(view=views.segment_members)
def members(
    ws: Workspace,
    name: Annotated[str, typer.Argument(help="Segment name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")],
    as_of: AsOfOption = None,
):
    """Write the segment's members (customer_id, segment, as_of) to a CSV or Parquet file."""
    n = ws.segments.export_members(name, out, as_of=_as_of(as_of))
    return {"segment": name, "members": n, "path": str(out)}


@app.command()
@command(view=views.segment_overlap)
def overlap(
    ws: Workspace,
    names: Annotated[list[str] | None, typer.Argument(help="Segments to compare (default: all).")] = None,
):
    """Matrix of members shared between segments (their latest materialisations)."""
    return ws.segments.overlap(names or None)


@app.command()
@command(view=views.segment_sql)
def sql(
    session: Session,
    name: Annotated[str | None, typer.Argument(help="A stored rule segment (or use --rule).")] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", "-r", help="Compile a rule without storing it.")
    ] = None,
    dialect: Annotated[str, typer.Option("--dialect", help="duckdb or spark.")] = "duckdb",
    as_of: AsOfOption = None,
):
    """Print the SQL the rule compiles to, in DuckDB or Spark SQL."""
    if dialect not in ("duckdb", "spark"):
        raise RuleError(f"unknown dialect {dialect!r}: use duckdb or spark")
    if (name is None) == (rule is None):
        raise typer.BadParameter("give a segment NAME or --rule, not both")
    text = session.workspace.segments.sql(name, rule=rule, dialect=dialect, as_of=_as_of(as_of))
    return {"dialect": dialect, "sql": text}


@app.command()
@command(view=views.segment_fairness)
def fairness(
    ws: Workspace, name: Annotated[str, typer.Argument(help="Segment name.")], as_of: AsOfOption = None
):
    """Composition on sensitive fields vs the base; flags disparate-impact ratios below 0.8."""
    return ws.segments.fairness(name, as_of=_as_of(as_of))
