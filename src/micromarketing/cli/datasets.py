"""`micromarketing datasets`: write the demo data set or the real CDNOW logs as ingestible files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from micromarketing import generate_dataset, write_cdnow
from micromarketing.cli._common import JsonOption, console, handle_errors, print_json, progress_bar

app = typer.Typer(
    help="Write data sets to ingest: synthetic demo data with planted segments, or the real CDNOW logs.",
    no_args_is_help=True,
)


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


class Population(StrEnum):
    segments = "segments"
    single = "single"


class CdnowFile(StrEnum):
    master = "master"
    sample = "sample"


OutOption = Annotated[Path, typer.Option("--out", "-o", help="Directory to write the files into.")]


@app.command("generate")
@handle_errors
def generate(
    out: OutOption,
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of customers.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same bytes).")] = 0,
    file_format: Annotated[
        FileFormat, typer.Option("--format", help="csv (events as JSON lines) or parquet.")
    ] = FileFormat.csv,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Customers simulated and written per chunk.")
    ] = 10_000,
    population: Annotated[
        Population,
        typer.Option(
            "--population",
            help="segments (six planted micro-segments) or single (one BG/NBD + Gamma-Gamma population "
            "with known parameters, written to params.json: for recovery tests).",
        ),
    ] = Population.segments,
    json_output: JsonOption = False,
) -> None:
    """Generate French demo customers, products, stores, orders, events and consent (+ truth.csv)."""
    with progress_bar(enabled=not json_output) as report:
        result = generate_dataset(
            out,
            customers=customers,
            seed=seed,
            fmt=file_format.value,
            progress=report,
            chunk_size=chunk_size,
            population=population.value,
        )
    if json_output:
        print_json(result.to_dict())
        return
    table = Table(title=f"Generated {customers:,} customers (seed {seed}) in {result.out}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("file")
    for name, path in result.paths.items():
        table.add_row(name, f"{result.rows[name]:,}", path.name)
    console.print(table)
    console.print("truth.csv names each customer's planted segment (for tests; do not ingest it).")
    if "params" in result.paths:
        console.print("params.json holds the generating BG/NBD and Gamma-Gamma parameters (unit: weeks).")


@app.command("cdnow")
@handle_errors
def cdnow(
    out: OutOption,
    which: Annotated[CdnowFile, typer.Option("--which", help="master (23,570 customers) or sample.")] = (
        CdnowFile.master
    ),
    json_output: JsonOption = False,
) -> None:
    """Write the CDNOW transaction log shipped with `lifetimes` as transactions.csv + customers.csv."""
    path = write_cdnow(out, which=which.value)
    customers_path = path.parent / "customers.csv"
    rows = sum(1 for _ in path.open()) - 1
    n_customers = sum(1 for _ in customers_path.open()) - 1
    if json_output:
        print_json({"which": which.value, "transactions": str(path), "customers": str(customers_path),
                    "rows": rows, "customer_count": n_customers})
        return
    console.print(f"Wrote {rows:,} CDNOW {which.value} transactions of {n_customers:,} customers to "
                  f"[bold]{path}[/] and {customers_path.name}")
