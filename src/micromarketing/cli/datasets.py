"""`micromarketing datasets`: write the demo data set or the real CDNOW logs as ingestible files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from micromarketing import generate_dataset, write_cdnow
from micromarketing.cli import views
from micromarketing.cli._common import command
from micromarketing.progress import ProgressCallback

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
@command(view=views.datasets_generate, as_json=views.to_dict)
def generate(
    progress: ProgressCallback,
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
):
    """Generate French demo customers, products, stores, orders, events and consent (+ truth.csv)."""
    return generate_dataset(
        out,
        customers=customers,
        seed=seed,
        fmt=file_format.value,
        progress=progress,
        chunk_size=chunk_size,
        population=population.value,
    )


@app.command("cdnow")
@command(view=views.datasets_cdnow)
def cdnow(
    out: OutOption,
    which: Annotated[CdnowFile, typer.Option("--which", help="master (23,570 customers) or sample.")] = (
        CdnowFile.master
    ),
):
    """Write the CDNOW transaction log shipped with `lifetimes` as transactions.csv + customers.csv."""
    path = write_cdnow(out, which=which.value)
    customers_path = path.parent / "customers.csv"
    return {"which": which.value, "transactions": str(path), "customers": str(customers_path),
            "rows": _data_lines(path), "customer_count": _data_lines(customers_path)}


def _data_lines(path: Path) -> int:
    """Rows of a CSV file below its header."""
    with path.open() as lines:
        return sum(1 for _ in lines) - 1
