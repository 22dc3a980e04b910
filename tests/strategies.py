"""Hypothesis strategies shared by the test packages.

Ingest: :func:`transaction_files` draws a list of transaction rows, each either valid (with the
values the warehouse must end up holding) or broken in exactly one known way (so the field the
quarantine must name is known), plus the file format and line-ending details to write them with.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from micromarketing.store.schema import ORDER_CHANNELS, TRANSACTIONS

CURRENCIES = ("USD", "EUR", "GBP")
TX_COLUMNS = list(TRANSACTIONS.column_names)

def trimmed(value: str) -> str:
    """What ingest stores for a text cell: DuckDB's TRIM strips Unicode space separators (Zs)."""
    start, end = 0, len(value)
    while start < end and unicodedata.category(value[start]) == "Zs":
        start += 1
    while end > start and unicodedata.category(value[end - 1]) == "Zs":
        end -= 1
    return value[start:end]


# Text without control characters or surrogates, plus a few awkward characters on purpose.
ODD = ["\u00e9", "\u6f22", "\U0001f600", "\u0301", "\u202e", "\u00a0", "\ufeff", '"', ",", "'", "\\"]
text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cc", "Cs")),
        st.sampled_from(ODD),
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: trimmed(s) != "")


@dataclass
class TxRow:
    """One drawn row: raw cell texts, and either the expected stored values or the failing field."""

    cells: dict[str, str]
    expected: dict[str, Any] | None = None  # stored values when valid
    bad_field: str | None = None  # the field the quarantine must name when invalid
    ragged: bool = False  # written with a field missing (CSV) / as broken JSON (JSONL)

    @property
    def key(self) -> tuple[str, int] | None:
        return None if self.expected is None else (self.expected["order_id"], self.expected["line_no"])


@dataclass
class TxFile:
    rows: list[TxRow]
    fmt: str  # csv | jsonl
    crlf: bool = False
    bom: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        """Write the rows to ``directory/tx.<fmt>`` and return the path."""
        if self.fmt == "csv":
            buf = io.StringIO(newline="")
            writer = csv.writer(buf, lineterminator="\r\n" if self.crlf else "\n")
            writer.writerow(TX_COLUMNS)
            for row in self.rows:
                values = [row.cells[c] for c in TX_COLUMNS]
                writer.writerow(values[:-1] if row.ragged else values)
            data = ("\ufeff" if self.bom else "") + buf.getvalue()
            path = directory / "tx.csv"
        else:
            lines = [
                '{"order_id": "broken' if row.ragged else json.dumps(row.cells, ensure_ascii=False)
                for row in self.rows
            ]
            data = "".join(line + ("\r\n" if self.crlf else "\n") for line in lines)
            path = directory / "tx.jsonl"
        path.write_bytes(data.encode("utf-8"))
        return path


def _spaced(value: str) -> st.SearchStrategy[str]:
    """``value`` with optional leading/trailing spaces (ingest trims them)."""
    return st.tuples(st.sampled_from(["", " ", "  "]), st.sampled_from(["", " "])).map(
        lambda pad: pad[0] + value + pad[1]
    )


@st.composite
def valid_tx(draw: st.DrawFn, currency: str | None = None) -> TxRow:
    """A valid transaction row (in ``currency`` when given; ingest refuses a second currency)."""
    order_id = draw(st.sampled_from(["O1", "O2", "O3", "O\u00e9", "O 5"]))
    line_no = draw(st.integers(1, 2))
    customer = draw(text)
    # Before "now" (later ones are implausible: settings.ingest.max_future).
    when = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31)))
    offset = draw(st.sampled_from([None, 0, 60, -330, 120]))
    if offset is None:
        stamp, expected_at = when.isoformat(sep=draw(st.sampled_from(["T", " "]))), when.replace(tzinfo=UTC)
    else:
        aware = when.replace(tzinfo=timezone(timedelta(minutes=offset)))
        stamp, expected_at = aware.isoformat(), aware.astimezone(UTC)
    cents = draw(st.integers(0, 10**9))
    amount = f"{cents // 100}.{cents % 100:02d}"
    currency = currency or draw(st.sampled_from(CURRENCIES))
    quantity = draw(st.one_of(st.just(""), st.integers(0, 1000).map(str)))
    channel = draw(st.one_of(st.just(""), st.sampled_from(ORDER_CHANNELS)))
    product = draw(st.one_of(st.just(""), text, st.just("multi\nline")))
    cells = {
        "order_id": draw(_spaced(order_id)),
        "line_no": str(line_no),
        "customer_id": customer,
        "ordered_at": stamp,
        "product_id": product,
        "category": draw(st.one_of(st.just(""), text)),
        "quantity": quantity,
        "amount": draw(_spaced(amount)),
        "currency": draw(st.sampled_from([currency, currency.lower()])),
        "channel": channel,
        "store_id": "",
    }
    expected = {
        "order_id": order_id,
        "line_no": line_no,
        "customer_id": trimmed(customer),
        "ordered_at": expected_at,
        "product_id": trimmed(product) or None,
        "category": trimmed(cells["category"]) or None,
        "quantity": int(quantity) if quantity else 1,
        "amount": float(amount),
        "currency": currency,
        "channel": channel or None,
        "store_id": None,
    }
    return TxRow(cells=cells, expected=expected)


BREAKS: dict[str, tuple[str, st.SearchStrategy[str]]] = {
    "wrong_type_amount": ("amount", st.sampled_from(["abc", "1,5", "1.2.3", "NaN", "--1", "1e"])),
    "negative_amount": ("amount", st.sampled_from(["-1", "-0.01", "-1e3"])),
    "missing_customer": ("customer_id", st.sampled_from(["", " ", "   "])),
    "huge_string": ("product_id", st.integers(1001, 3000).map(lambda n: "x" * n)),
    "negative_quantity": ("quantity", st.sampled_from(["-1", "-100"])),
    "bad_quantity": ("quantity", st.sampled_from(["1.5", "two", "1e2"])),
    "bad_currency": ("currency", st.sampled_from(["XXX", "US", "dollars", "\u20ac"])),
    "bad_timestamp": (
        "ordered_at", st.sampled_from(["yesterday", "2024-13-01", "2024-02-30T00:00:00", "17"])
    ),
    "bad_channel": ("channel", st.sampled_from(["shop", "ONLINE", "e-mail"])),
}


@st.composite
def broken_tx(draw: st.DrawFn, allow_ragged: bool = True, currency: str | None = None) -> TxRow:
    row = draw(valid_tx(currency))
    kinds = sorted(BREAKS) + (["ragged"] if allow_ragged else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "ragged":
        return TxRow(cells=row.cells, bad_field="(row)", ragged=True)
    column, values = BREAKS[kind]
    return TxRow(cells={**row.cells, column: draw(values)}, bad_field=column)


@st.composite
def transaction_files(draw: st.DrawFn, max_rows: int = 25) -> TxFile:
    """A transactions file mixing valid rows (with duplicate keys) and singly-broken rows, in one currency."""
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    currency = draw(st.sampled_from(CURRENCIES))
    rows = draw(
        st.lists(st.one_of(valid_tx(currency), broken_tx(currency=currency)), min_size=0, max_size=max_rows)
    )
    return TxFile(rows=rows, fmt=fmt, crlf=draw(st.booleans()), bom=fmt == "csv" and draw(st.booleans()))


# -- issue #12: implausible values, colliding JSON keys, currencies, odd CSV dialects -------------
# Each strategy draws members of one class of input that ingest must quarantine (or refuse) with a
# known field, so a test can check the reason instead of only "it did not crash".

FLOOR = datetime(1900, 1, 1, tzinfo=UTC)  # settings.ingest.min_date's default


@st.composite
def implausible_tx(draw: st.DrawFn, currency: str = "EUR") -> TxRow:
    """A transaction row valid but for one implausible value: a date far in the future (up to
    9999-12-31 with any offset), one before the 1900 floor (down to year 1), or an amount above
    1e9 (up to 1e300).  ``bad_field`` names the field."""
    row = draw(valid_tx(currency))
    kind = draw(st.sampled_from(["future", "past", "amount"]))
    if kind == "amount":
        exponent = draw(st.integers(10, 300))
        mantissa = draw(st.sampled_from(["1", "9.99", "1.5"]))
        return TxRow(cells={**row.cells, "amount": f"{mantissa}e{exponent}"}, bad_field="amount")
    if kind == "future":
        when = draw(st.datetimes(min_value=datetime(2031, 1, 1), max_value=datetime(9999, 12, 30)))
    else:
        when = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(1899, 12, 30)))
    offset = draw(st.sampled_from(["", "Z", "+14:00", "-12:00", "+05:30"]))
    stamp = when.replace(microsecond=0).isoformat() + offset
    return TxRow(cells={**row.cells, "ordered_at": stamp}, bad_field="ordered_at")


def case_variants(key: str) -> st.SearchStrategy[list[str]]:
    """Two or more distinct spellings of ``key`` that differ only by case (e.g. Customer_ID, customer_id)."""
    letters = [i for i, ch in enumerate(key) if ch.isalpha()]
    spelling = st.lists(st.booleans(), min_size=len(letters), max_size=len(letters)).map(
        lambda upper: "".join(
            ch.upper() if i in letters and upper[letters.index(i)] else ch for i, ch in enumerate(key)
        )
    )
    return st.lists(spelling, min_size=2, max_size=3, unique=True)


@st.composite
def colliding_jsonl(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int], dict[int, str]]:
    """JSON-lines transaction objects where some lines hold one key under two spellings.

    Returns ``(objects, colliding, customer)``: the 1-based line numbers that collide (they must
    be quarantined naming the lower-cased key) and, for the other lines, the customer id that
    must be stored (whatever spelling of ``customer_id`` the line used).
    """
    key = draw(st.sampled_from(["customer_id", "amount", "currency"]))
    variants = draw(case_variants(key))
    objects, colliding, customer = [], [], {}
    for number in range(1, draw(st.integers(1, 8)) + 1):
        obj: dict[str, Any] = {
            "order_id": f"O{number}", "customer_id": f"C{number}", "ordered_at": "2024-01-01",
            "amount": 1, "currency": "EUR",
        }
        value = obj.pop(key)
        if draw(st.booleans()):  # collide: two spellings, possibly disagreeing values
            for spelling in draw(st.lists(st.sampled_from(variants), min_size=2, max_size=2, unique=True)):
                obj[spelling] = value if key != "customer_id" else f"{value}-{spelling}"
            colliding.append(number)
        else:
            obj[draw(st.sampled_from(variants))] = value
            customer[number] = f"C{number}"
        objects.append(obj)
    return objects, colliding, customer


@st.composite
def currency_files(draw: st.DrawFn) -> list[list[str]]:
    """A few transaction files (each a list of currency codes, one per row, any case/padding)."""
    codes = st.sampled_from(CURRENCIES).flatmap(
        lambda c: st.sampled_from([c, c.lower(), f" {c} "])
    )
    return draw(st.lists(st.lists(codes, min_size=1, max_size=6), min_size=1, max_size=3))


def delimited_headers(delimiter: str) -> st.SearchStrategy[str]:
    """A transactions header (at least the required columns, in any order) joined by ``delimiter``."""
    required = [c.name for c in TRANSACTIONS.columns if c.required]
    optional = [c for c in TX_COLUMNS if c not in required]
    return st.tuples(st.permutations(required), st.lists(st.sampled_from(optional), unique=True)).map(
        lambda parts: delimiter.join([*parts[0], *parts[1]])
    )
