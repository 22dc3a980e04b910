"""The CDNOW loader: the real CDNOW transaction logs as files our ingest accepts.

The ``lifetimes`` wheel ships ``CDNOW_master.txt`` (23,570 customers, 69,659 purchase rows, with a
header) and ``CDNOW_sample.txt`` (2,357 customers, 6,919 rows, no header, master id in column 1).
We locate them through the installed distribution's file list instead of importing ``lifetimes``
(its import breaks with current NumPy/SciPy) and read them with a few lines of plain Python
(the files are small, whitespace-separated, and their ids must stay text with leading zeros).
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from micromarketing.errors import DataError

__all__ = ["write_cdnow"]

_FILES = {"master": "CDNOW_master.txt", "sample": "CDNOW_sample.txt"}


def cdnow_source(which: Literal["master", "sample"] = "master", distribution: str = "lifetimes") -> Path:
    """The path of the shipped CDNOW text file inside the installed ``distribution``.

    Raises :class:`~micromarketing.errors.DataError` naming the package to install when the
    distribution (or the file in it) is missing.
    """
    if which not in _FILES:
        raise DataError(f"unknown CDNOW file {which!r}: use 'master' or 'sample'")
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"the CDNOW data ships with the {distribution!r} package, which is not installed "
            f"(pip install lifetimes==0.11.3)"
        ) from None
    for file in dist.files or ():
        if file.name == _FILES[which] and file.parent.name == "datasets":
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise DataError(f"{distribution} is installed but has no datasets/{_FILES[which]}")


def write_cdnow(out: Path, which: Literal["master", "sample"] = "master") -> Path:
    """Write the CDNOW ``which`` log as ``out/transactions.csv`` (+ ``out/customers.csv``).

    One transaction line per source row: ``order_id`` = ``"{customer}-{yyyymmdd}-{n}"`` (n counts
    rows of the same customer and day), ``line_no`` 1, ``customer_id`` as written in the file
    (zero-padded master id, e.g. ``"00042"``; for the sample file the master id of column 1),
    ``ordered_at`` the date at 00:00 UTC, ``quantity`` the number of CDs, ``amount`` the dollar
    value, ``currency`` USD and ``channel`` online.  ``customers.csv`` lists the distinct customer
    ids so profiles include every customer.  Returns the transactions path.
    """
    source = cdnow_source(which)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = ("order_id", "customer_id", "ordered_at", "quantity", "amount")
    columns: dict[str, list] = {k: [] for k in names}
    seen: Counter[tuple[str, str]] = Counter()
    with source.open(encoding="ascii") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields or (lineno == 1 and not fields[0].isdigit()):
                continue  # header of the master file
            if which == "sample":
                fields = [fields[0], *fields[2:]]
            if len(fields) != 4:
                raise DataError(f"{source}: line {lineno}: expected 4 fields, got {len(fields)}")
            customer, day, cds, dollars = fields
            if len(day) != 8 or not day.isdigit():
                raise DataError(f"{source}: line {lineno}: bad date {day!r}")
            seen[(customer, day)] += 1
            columns["order_id"].append(f"{customer}-{day}-{seen[(customer, day)]}")
            columns["customer_id"].append(customer)
            columns["ordered_at"].append(f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00:00Z")
            columns["quantity"].append(int(cds))
            columns["amount"].append(float(dollars))
    n = len(columns["order_id"])
    transactions = pa.table({
        "order_id": columns["order_id"],
        "line_no": pa.array([1] * n, pa.int64()),
        "customer_id": columns["customer_id"],
        "ordered_at": columns["ordered_at"],
        "quantity": pa.array(columns["quantity"], pa.int64()),
        "amount": pa.array(columns["amount"], pa.float64()),
        "currency": ["USD"] * n,
        "channel": ["online"] * n,
    })
    customers = pa.table({"customer_id": sorted(set(columns["customer_id"]))})
    tx_path = out / "transactions.csv"
    _write_csv(transactions, tx_path)
    _write_csv(customers, out / "customers.csv")
    return tx_path


def _write_csv(table: pa.Table, path: Path) -> None:
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        pacsv.write_csv(table, fh, write_options=options)
