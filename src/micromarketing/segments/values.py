"""The values of a rule while it compiles, and their kinds: what the type rules reason about.

A :class:`V` is a compiled sub-expression with its rule-level kind (number, text, date, …), a
label and the position it came from, so every type error can name both; a :class:`Behaviour` is a
behaviour call turned into a per-customer aggregate column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir

from micromarketing.segments.dsl import Pos, error_at

_NO = object()


@dataclass
class V:
    """A compiled sub-expression: the Ibis value, its rule-level kind and where it came from."""

    kind: str  # number | text | date | timestamp | bool | null | point | other
    pos: Pos
    label: str
    expr: Any = None
    lit: Any = _NO

    @property
    def is_lit(self) -> bool:
        return self.lit is not _NO

    def e(self) -> Any:
        if self.expr is None:
            if self.kind == "null":
                return ibis.null()
            if self.kind == "number":
                return ibis.literal(self.lit, type="float64" if isinstance(self.lit, float) else "int64")
            return ibis.literal(self.lit)
        return self.expr


def kind_of(dtype: Any) -> str:
    if dtype.is_boolean():
        return "bool"
    if dtype.is_numeric():
        return "number"
    if dtype.is_string():
        return "text"
    if dtype.is_date():
        return "date"
    if dtype.is_timestamp():
        return "timestamp"
    return "other"


KIND_NAMES = {
    "number": "a number",
    "text": "text",
    "date": "a date",
    "timestamp": "a timestamp",
    "bool": "a condition",
    "null": "null",
    "point": "a location",
    "other": "an unsupported value",
}


@dataclass(frozen=True)
class Behaviour:
    """One behaviour call turned into a per-customer aggregate column of the base."""

    column: str
    table: ir.Table  # customer_id + column
    kind: str  # bool | number
    default: Any


def parse_date(text: str, pos: Pos) -> date:
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, TypeError):
        raise error_at(f"expected a date written YYYY-MM-DD but found {text!r}", pos) from None
