"""`micromarketing segment …`: create, preview, list, export, compare and audit rule segments.

Thin layer over :class:`micromarketing.segments.Segments`; every command accepts ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

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
from micromarketing.errors import RuleError

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


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", markup=True, highlight=False)


@app.command()
@handle_errors
def create(
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
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create (or with --replace, re-version) a rule segment and materialise its membership."""
    with open_workspace(workspace) as ws:
        result = ws.segments.create(
            name,
            rule,
            description=description,
            allow_sensitive=allow_sensitive,
            reason=reason,
            as_of=_as_of(as_of),
            replace=replace,
        )
    if json_output:
        print_json(asdict(result))
        return
    console.print(
        f"Segment [bold]{result.segment}[/] v{result.version}: {result.size:,} members as of {result.as_of}"
    )
    _warn(result.warnings)


@app.command()
@handle_errors
def preview(
    name: Annotated[str | None, typer.Argument(help="A stored segment (or use --rule).")] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", "-r", help="Preview a rule without storing it.")
    ] = None,
    sample: Annotated[int, typer.Option("--sample", min=0, max=1000, help="Sample rows to show.")] = 10,
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Size, share of base, revenue share, average CLV, a sample and the most distinctive fields."""
    if (name is None) == (rule is None):
        raise typer.BadParameter("give a segment NAME or --rule, not both")
    with open_workspace(workspace) as ws:
        p = ws.segments.preview(name, rule=rule, as_of=_as_of(as_of), sample=sample)
    if json_output:
        print_json(asdict(p))
        return
    console.print(f"[bold]{name or p.rule}[/] as of {p.as_of}")
    console.print(f"  size           {p.size:,} of {p.base_size:,} ({p.share_of_base:.1%} of the base)")
    if p.revenue_share is not None:
        console.print(f"  revenue share  {p.revenue_share:.1%}")
    if p.average_clv is not None:
        console.print(f"  average CLV    {p.average_clv:,.2f}")
    if p.differences:
        table = Table(title="How it differs from the base")
        table.add_column("field")
        table.add_column("difference")
        for d in p.differences:
            table.add_row(d.field, d.detail)
        console.print(table)
    if p.sample:
        table = Table(title=f"Sample ({len(p.sample)})")
        for col in p.sample[0]:
            table.add_column(col)
        for row in p.sample:
            table.add_row(*[_cell(v) for v in row.values()])
        console.print(table)
    _warn(p.warnings)


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """All segments with their kind, version, latest size and rule."""
    with open_workspace(workspace) as ws:
        infos = ws.segments.list()
    if json_output:
        print_json([asdict(i) for i in infos])
        return
    table = Table(title="Segments")
    for col in ("name", "kind", "version", "size", "as of", "rule / description"):
        table.add_column(col, justify="right" if col in ("version", "size") else "left")
    for i in infos:
        table.add_row(
            i.name,
            i.kind,
            str(i.version),
            "-" if i.size is None else f"{i.size:,}",
            str(i.as_of or "-"),
            i.rule or i.description,
        )
    console.print(table)


@app.command()
@handle_errors
def members(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")],
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write the segment's members (customer_id, segment, as_of) to a CSV or Parquet file."""
    with open_workspace(workspace) as ws:
        n = ws.segments.export_members(name, out, as_of=_as_of(as_of))
    if json_output:
        print_json({"segment": name, "members": n, "path": str(out)})
    else:
        console.print(f"Wrote {n:,} members of [bold]{name}[/] to {out}")


@app.command()
@handle_errors
def overlap(
    names: Annotated[list[str] | None, typer.Argument(help="Segments to compare (default: all).")] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Matrix of members shared between segments (their latest materialisations)."""
    with open_workspace(workspace) as ws:
        o = ws.segments.overlap(names or None)
    if json_output:
        print_json(asdict(o))
        return
    table = Table(title="Shared members")
    table.add_column("segment")
    for n in o.names:
        table.add_column(n, justify="right")
    for a in o.names:
        table.add_row(a, *[f"{o.shared[a][b]:,}" for b in o.names])
    console.print(table)
    _warn(o.warnings)


@app.command()
@handle_errors
def sql(
    name: Annotated[str | None, typer.Argument(help="A stored rule segment (or use --rule).")] = None,
    rule: Annotated[
        str | None, typer.Option("--rule", "-r", help="Compile a rule without storing it.")
    ] = None,
    dialect: Annotated[str, typer.Option("--dialect", help="duckdb or spark.")] = "duckdb",
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the SQL the rule compiles to, in DuckDB or Spark SQL."""
    if dialect not in ("duckdb", "spark"):
        raise RuleError(f"unknown dialect {dialect!r}: use duckdb or spark")
    if (name is None) == (rule is None):
        raise typer.BadParameter("give a segment NAME or --rule, not both")
    with open_workspace(workspace) as ws:
        text = ws.segments.sql(name, rule=rule, dialect=dialect, as_of=_as_of(as_of))
    if json_output:
        print_json({"dialect": dialect, "sql": text})
    else:
        typer.echo(text)


@app.command()
@handle_errors
def fairness(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    as_of: AsOfOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Composition on sensitive fields vs the base; flags disparate-impact ratios below 0.8."""
    with open_workspace(workspace) as ws:
        report = ws.segments.fairness(name, as_of=_as_of(as_of))
    if json_output:
        print_json(asdict(report))
        return
    console.print(f"[bold]{name}[/]: {report.size:,} members of {report.base_size:,}")
    for f in report.fields:
        table = Table(
            title=f"{f.field} (disparate impact "
            f"{'n/a' if f.disparate_impact is None else f'{f.disparate_impact:.2f}'})"
        )
        for col in ("group", "base", "segment", "base share", "segment share", "selection rate", "ratio"):
            table.add_column(col, justify="left" if col == "group" else "right")
        for g in f.groups:
            table.add_row(
                g.value,
                f"{g.base_count:,}",
                f"{g.segment_count:,}",
                f"{g.base_share:.1%}",
                f"{g.segment_share:.1%}",
                f"{g.selection_rate:.1%}",
                "-" if g.impact_ratio is None else f"{g.impact_ratio:.2f}",
            )
        console.print(table)
        if f.flagged:
            err_console.print(
                f"[yellow]warning:[/] {f.field}: disparate-impact ratio {f.disparate_impact:.2f} "
                "is below 0.8 (four-fifths rule)",
                markup=True,
                highlight=False,
            )
    if not report.fields:
        console.print("No sensitive fields in the warehouse to compare on.")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)
