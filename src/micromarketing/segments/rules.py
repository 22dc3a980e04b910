"""Compile a parsed segment rule into Ibis expressions over the warehouse.

A rule is evaluated over the *base*: the ``profiles`` table (one row per customer, prospects
included) — or ``customers`` before any profile was built — left-joined to the ``customers``
attributes the rule mentions.  Behaviour functions (``bought``, ``viewed``, ``events``,
``orders``) and ``in_segment`` become small per-customer aggregates left-joined onto that base,
all relative to the evaluation's as-of date, which is an explicit input (default: the profiles'
``as_of``).  The same expression runs on DuckDB and on Spark because it only uses portable Ibis
operations (haversine distance is computed with Ibis math functions, divisions go through
``NULLIF`` so Spark's ANSI mode cannot raise, arithmetic is done in float64 so nothing overflows).

This module owns the type rules of the language (what may be compared with what, in
:class:`Compiler`); the catalogue of tables and fields is :mod:`~micromarketing.segments.catalog`,
the function library :mod:`~micromarketing.segments.functions`, the compiled values and their kinds
:mod:`~micromarketing.segments.values`.  Positions in every error come from the syntax tree.
"""


from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from micromarketing.segments import dsl
from micromarketing.segments.catalog import (
    CLV_FIELDS,
    FIELD_ALIASES,
    HIDDEN_COLUMNS,
    PROFILE_FIELDS,
    RENAMED_FIELDS,
    Catalog,
    SegmentRef,
    SegmentResolver,
    did_you_mean,
    to_date,
)
from micromarketing.segments.dsl import Pos, error_at
from micromarketing.segments.functions import BEHAVIOURS, FUNCTIONS, GEO_FUNCTIONS, SCALAR_FUNCTIONS
from micromarketing.segments.values import KIND_NAMES, Behaviour, V, kind_of, parse_date

__all__ = [
    "HIDDEN_COLUMNS", "Catalog", "CompiledRule", "SegmentRef", "SegmentResolver", "compile_rule",
    "did_you_mean", "to_date",
]

MAX_WITHIN_DAYS = 36_500


@dataclass
class CompiledRule:
    """A rule compiled for one as-of date: the base table, the predicate and what it refers to."""

    text: str
    tree: dsl.Node
    _as_of: date | Callable[[], date]
    base: ir.Table
    predicate: ir.BooleanValue
    fields: dict[str, Pos]  # resolved base fields this rule reads (first position), transitively
    segments: tuple[str, ...] = ()  # segments referenced through in_segment, transitively
    warnings: list[str] = field(default_factory=list)

    @property
    def as_of(self) -> date:
        """The evaluation date (looked up only when needed: a rule without dates does not)."""
        if callable(self._as_of):
            self._as_of = self._as_of()
        return self._as_of

    def matches(self) -> ir.Table:
        """The base rows that satisfy the rule."""
        return self.base.filter(self.predicate)

    def members(self) -> ir.Table:
        """The ``customer_id`` of every member."""
        return self.matches().select("customer_id")


def compile_rule(
    text: str,
    catalog: Catalog,
    *,
    as_of: date | None = None,
    resolve_segment: SegmentResolver | None = None,
    _stack: tuple[str, ...] = (),
) -> CompiledRule:
    """Parse and compile ``text`` against ``catalog`` as of ``as_of`` (default: the profiles' date).

    Raises :class:`RuleError` (with line and column) for syntax errors, unknown fields or
    functions, wrong argument types and cyclic ``in_segment`` references.
    """
    tree = dsl.parse(text)
    return Compiler(catalog, as_of, resolve_segment, _stack).compile(text, tree)


class Compiler:
    def __init__(
        self, catalog: Catalog, as_of: date | None, resolver: SegmentResolver | None, stack: tuple[str, ...]
    ) -> None:
        self.catalog = catalog
        self.explicit_as_of = as_of
        self.resolver = resolver
        self.stack = stack
        self.available = catalog.fields()
        self.fields: dict[str, Pos] = {}
        self.segments: list[str] = []
        self.behaviours: dict[dsl.Call, Behaviour] = {}
        self.warnings: list[str] = []
        self.base: ir.Table | None = None

    @property
    def as_of(self) -> date:
        """The explicit as-of date, else the catalog's default (looked up on first use)."""
        if self.explicit_as_of is None:
            self.explicit_as_of = self.catalog.default_as_of()
        return self.explicit_as_of

    # -- driver -------------------------------------------------------------------------------
    def compile(self, text: str, tree: dsl.Node) -> CompiledRule:
        nodes = dsl.walk(tree)
        needed: set[str] = set()
        for node in nodes:
            if isinstance(node, dsl.FieldRef):
                name = self.resolve_field(node.name, node.pos)
                self.fields.setdefault(name, node.pos)
                needed.add(name)
            elif isinstance(node, dsl.Call) and node.name in GEO_FUNCTIONS:
                for name in ("lat", "lon"):
                    if name not in self.available:
                        raise error_at(
                            f"{node.name}() needs customer coordinates (lat, lon), "
                            "which the warehouse does not have",
                            node.pos,
                        )
                    self.fields.setdefault(name, node.pos)
                    needed.add(name)
        for node in nodes:
            if isinstance(node, dsl.Call) and node.name in BEHAVIOURS and node not in self.behaviours:
                self.behaviours[node] = BEHAVIOURS[node.name](self, node, f"_b{len(self.behaviours)}")
        base = self.catalog.base(needed)
        for beh in self.behaviours.values():
            columns = list(base.columns)
            joined = base.left_join(beh.table, base.customer_id == beh.table.customer_id)
            base = joined.select(
                *[base[c] for c in columns],
                **{beh.column: ibis.coalesce(beh.table[beh.column], beh.default)},
            )
        self.base = base
        value = self.value(tree)
        if value.kind != "bool":
            raise error_at(
                f"a rule must be a condition (true or false), but this is {KIND_NAMES[value.kind]}"
                f"; compare it, e.g. {value.label} > 0",
                tree.pos,
            )
        predicate = value.e()
        if value.is_lit:
            predicate = ibis.literal(bool(value.lit))
        profile_as_of = self.catalog.profile_as_of() if self.explicit_as_of is not None else None
        if (
            profile_as_of is not None
            and profile_as_of != self.as_of
            and any(self.available.get(f) == "profiles" for f in self.fields)
        ):
            self.warnings.append(
                f"profile fields are as of {profile_as_of}, the rule is evaluated as of {self.as_of}"
            )
        when: date | Callable[[], date] = (
            self.explicit_as_of if self.explicit_as_of is not None else self.catalog.default_as_of
        )
        return CompiledRule(
            text, tree, when, base, predicate, self.fields, tuple(dict.fromkeys(self.segments)), self.warnings
        )

    # -- fields -------------------------------------------------------------------------------
    def resolve_field(self, name: str, pos: Pos) -> str:
        if name in self.available:
            return name
        renamed = RENAMED_FIELDS.get(name.lower())
        if renamed is not None:
            warning = f"field {name!r} is deprecated: use {renamed!r} (line {pos.line}, column {pos.col})"
            if warning not in self.warnings:
                self.warnings.append(warning)
            name = renamed
            if name in self.available:
                return name
        alias = FIELD_ALIASES.get(name.lower())
        if alias and alias in self.available:
            return alias
        lowered = {c.lower(): c for c in self.available}
        if name.lower() in lowered:
            return lowered[name.lower()]
        if name.lower() in CLV_FIELDS:
            raise error_at(
                f"field {name!r} is not available yet: it appears once a CLV model is fitted "
                "(run `micromarketing profile` with CLV)",
                pos,
            )
        if name.lower() in PROFILE_FIELDS:
            raise error_at(f"field {name!r} is not available yet: run `micromarketing profile` first", pos)
        if name.lower() in FUNCTIONS:
            raise error_at(f"{name!r} is a function: call it as {name}(…)", pos)
        candidates = sorted(set(self.available) | set(CLV_FIELDS) | set(FIELD_ALIASES))
        raise error_at(f"unknown field {name!r}{did_you_mean(name, candidates)}", pos)

    # -- expressions --------------------------------------------------------------------------
    def value(self, node: dsl.Node) -> V:
        if isinstance(node, dsl.Literal):
            text = repr(node.value) if node.kind == "text" else str(node.value).lower()
            if node.kind == "number":
                text = str(node.value)
            return V(node.kind, node.pos, text, lit=node.value)
        if isinstance(node, dsl.FieldRef):
            name = self.resolve_field(node.name, node.pos)
            col = self.base[name]  # type: ignore[index]
            return V(kind_of(col.type()), node.pos, name, expr=col)
        if isinstance(node, dsl.Unary):
            return self.unary(node)
        if isinstance(node, dsl.Binary):
            if node.op in ("and", "or"):
                return self.logical(node)
            if node.op in ("+", "-", "*", "/"):
                return self.arithmetic(node)
            return self.compare(node)
        if isinstance(node, dsl.InList):
            return self.in_list(node)
        if isinstance(node, dsl.Between):
            return self.between(node)
        if isinstance(node, dsl.TextMatch):
            return self.text_match(node)
        if isinstance(node, dsl.IsNull):
            operand = self.value(node.operand)
            if operand.kind == "point":
                raise error_at("a location cannot be null-checked", operand.pos)
            e = operand.e()
            return V(
                "bool", node.pos, f"{operand.label} is null", expr=e.notnull() if node.negated else e.isnull()
            )
        if isinstance(node, dsl.Call):
            return self.call(node)
        raise error_at("unsupported expression", node.pos)  # pragma: no cover

    def condition(self, node: dsl.Node, what: str) -> V:
        v = self.value(node)
        if v.kind != "bool":
            raise error_at(f"expected a condition {what} but found {KIND_NAMES[v.kind]} ({v.label})", v.pos)
        return v

    def unary(self, node: dsl.Unary) -> V:
        if node.op == "not":
            v = self.condition(node.operand, "after 'not'")
            if v.is_lit:
                return V("bool", node.pos, f"not {v.label}", lit=not v.lit)
            return V("bool", node.pos, f"not {v.label}", expr=~v.e())
        v = self.value(node.operand)
        if v.kind != "number":
            raise error_at(f"'-' needs a number but found {KIND_NAMES[v.kind]} ({v.label})", node.pos)
        if v.is_lit:
            return V("number", node.pos, f"-{v.label}", lit=-v.lit)
        return V("number", node.pos, f"-{v.label}", expr=-v.e().cast("float64"))

    def logical(self, node: dsl.Binary) -> V:
        left = self.condition(node.left, f"before '{node.op}'")
        right = self.condition(node.right, f"after '{node.op}'")
        expr = (left.e() & right.e()) if node.op == "and" else (left.e() | right.e())
        return V("bool", node.pos, f"({left.label} {node.op} {right.label})", expr=expr)

    def arithmetic(self, node: dsl.Binary) -> V:
        left, right = self.value(node.left), self.value(node.right)
        label = f"{left.label} {node.op} {right.label}"
        if left.kind == "number" and right.kind == "number":
            if left.is_lit and right.is_lit and node.op != "/":
                try:
                    result = {
                        "+": left.lit + right.lit,
                        "-": left.lit - right.lit,
                        "*": left.lit * right.lit,
                    }[node.op]
                except OverflowError:
                    result = math.inf
                if isinstance(result, float) and not math.isfinite(result):
                    raise error_at("number is too large", node.pos)
                if isinstance(result, int) and not -(2**63) <= result < 2**63:
                    result = float(result)
                return V("number", node.pos, label, lit=result)
            a, b = left.e().cast("float64"), right.e().cast("float64")
            expr = {"+": a + b, "-": a - b, "*": a * b}.get(node.op)
            if node.op == "/":
                expr = a / b.nullif(0.0)
            return V("number", node.pos, label, expr=expr)
        if left.kind in ("date", "timestamp", "text") and node.op in ("+", "-") and right.kind == "number":
            d = self.as_date(left, f"'{node.op}'")
            if not right.is_lit or not float(right.lit).is_integer() or abs(right.lit) > MAX_WITHIN_DAYS * 10:
                raise error_at(
                    "dates can only be shifted by a whole number of days (a value, e.g. as_of() - 90)",
                    right.pos,
                )
            days = int(right.lit) * (1 if node.op == "+" else -1)
            if d.is_lit:
                try:
                    return V("date", node.pos, label, lit=d.lit + timedelta(days=days))
                except OverflowError:
                    raise error_at("date is out of range", node.pos) from None
            return V("date", node.pos, label, expr=d.e() + ibis.interval(days=days))
        if (
            node.op == "-"
            and left.kind in ("date", "timestamp")
            and right.kind in ("date", "timestamp", "text")
        ):
            a, b = self.as_date(left, "'-'"), self.as_date(right, "'-'")
            return V("number", node.pos, label, expr=a.e().delta(b.e(), unit="day"))
        raise error_at(
            f"cannot apply '{node.op}' to {KIND_NAMES[left.kind]} ({left.label}) and "
            f"{KIND_NAMES[right.kind]} ({right.label})",
            node.pos,
        )

    def as_date(self, v: V, where: str) -> V:
        """A date value: timestamps are truncated to their UTC date, text literals parsed as ISO."""
        if v.kind == "date":
            return v
        if v.kind == "timestamp":
            return V("date", v.pos, v.label, expr=v.e().date())
        if v.kind == "text" and v.is_lit:
            return V("date", v.pos, v.label, lit=parse_date(v.lit, v.pos))
        raise error_at(f"{where} needs a date but found {KIND_NAMES[v.kind]} ({v.label})", v.pos)

    def coerce(self, left: V, right: V, where: str, pos: Pos) -> tuple[V, V]:
        """Make two values comparable, or raise a RuleError naming both."""
        for v in (left, right):
            if v.kind == "null":
                raise error_at(f"cannot use null in {where}; write 'is null' / 'is not null'", v.pos)
            if v.kind in ("point", "other"):
                raise error_at(f"{KIND_NAMES[v.kind]} ({v.label}) cannot be used in {where}", v.pos)
        if left.kind == right.kind and left.kind != "timestamp":
            return left, right
        dates = ("date", "timestamp")
        if left.kind in dates and (right.kind in dates or (right.kind == "text" and right.is_lit)):
            return self.as_date(left, where), self.as_date(right, where)
        if right.kind in dates and left.kind == "text" and left.is_lit:
            return self.as_date(left, where), self.as_date(right, where)
        if left.kind == right.kind == "timestamp":
            return left, right
        raise error_at(
            f"cannot compare {KIND_NAMES[left.kind]} ({left.label}) with "
            f"{KIND_NAMES[right.kind]} ({right.label})",
            pos,
        )

    def compare(self, node: dsl.Binary) -> V:
        left, right = self.coerce(
            self.value(node.left), self.value(node.right), f"'{_op_text(node.op)}'", node.pos
        )
        if left.kind == "bool" and node.op not in ("==", "!="):
            raise error_at(f"conditions can only be compared with '=' or '!=', not '{node.op}'", node.pos)
        a, b = left.e(), right.e()
        expr = {
            "==": lambda: a == b,
            "!=": lambda: a != b,
            "<": lambda: a < b,
            "<=": lambda: a <= b,
            ">": lambda: a > b,
            ">=": lambda: a >= b,
        }[node.op]()
        return V("bool", node.pos, f"{left.label} {_op_text(node.op)} {right.label}", expr=expr)

    def in_list(self, node: dsl.InList) -> V:
        operand = self.value(node.operand)
        values = []
        for item in node.items:
            v = self.value(item)
            if not v.is_lit:
                raise error_at("the items of 'in (…)' must be values such as 'Lyon' or 3", v.pos)
            operand_c, v = self.coerce(operand, v, "'in (…)'", v.pos)
            values.append(v.lit)
        if operand.kind in ("timestamp", "text") and operand_c.kind == "date":
            operand = operand_c
        expr = operand.e().isin(values)
        return V("bool", node.pos, f"{operand.label} in (…)", expr=~expr if node.negated else expr)

    def between(self, node: dsl.Between) -> V:
        operand = self.value(node.operand)
        op1, low = self.coerce(operand, self.value(node.low), "'between'", node.pos)
        op2, high = self.coerce(operand, self.value(node.high), "'between'", node.pos)
        if op1.kind == "bool":
            raise error_at("'between' needs numbers, text or dates, not a condition", node.pos)
        expr = op1.e().between(low.e(), high.e())
        return V("bool", node.pos, f"{operand.label} between …", expr=~expr if node.negated else expr)

    def text_match(self, node: dsl.TextMatch) -> V:
        operand, pattern = self.value(node.operand), self.value(node.pattern)
        for v in (operand, pattern):
            if v.kind != "text":
                raise error_at(f"'{node.op}' works on text but found {KIND_NAMES[v.kind]} ({v.label})", v.pos)
        a = operand.e()
        b = pattern.lit if pattern.is_lit else pattern.e()
        expr = {
            "contains": lambda: a.contains(b),
            "starts_with": lambda: a.startswith(b),
            "ends_with": lambda: a.endswith(b),
        }[node.op]()
        return V(
            "bool",
            node.pos,
            f"{operand.label} {node.op} {pattern.label}",
            expr=~expr if node.negated else expr,
        )

    # -- functions ----------------------------------------------------------------------------
    def call(self, node: dsl.Call) -> V:
        if node in self.behaviours:
            beh = self.behaviours[node]
            return V(beh.kind, node.pos, f"{node.name}(…)", expr=self.base[beh.column])  # type: ignore[index]
        handler = SCALAR_FUNCTIONS.get(node.name)
        if handler is None:
            raise error_at(
                f"unknown function {node.name!r}{did_you_mean(node.name, sorted(FUNCTIONS))}", node.pos
            )
        return handler(self, node)

    def literal_arg(self, node: dsl.Node, kind: str, what: str) -> Any:
        v = self.value(node)
        if not v.is_lit or v.kind != kind:
            raise error_at(f"{what} must be {KIND_NAMES[kind]} value", node.pos)
        return v.lit

    def kwargs(self, node: dsl.Call, allowed: dict[str, str]) -> dict[str, tuple[Any, Pos]]:
        """Validate named arguments: each must be a literal of the declared kind."""
        if node.args:
            names = ", ".join(f"{k}=…" for k in allowed)
            raise error_at(f"{node.name}() takes named arguments only ({names})", node.args[0].pos)
        out: dict[str, tuple[Any, Pos]] = {}
        for kw in node.kwargs:
            if kw.name not in allowed:
                raise error_at(
                    f"{node.name}() has no argument {kw.name!r}"
                    f"{did_you_mean(kw.name, list(allowed))}; it takes {', '.join(allowed)}",
                    kw.pos,
                )
            kind = allowed[kw.name]
            value = self.literal_arg(kw.value, "number" if kind == "days" else "text", f"{kw.name}")
            if kind == "days":
                if not float(value).is_integer() or not 1 <= value <= MAX_WITHIN_DAYS:
                    raise error_at(
                        f"within_days must be a whole number of days between 1 and {MAX_WITHIN_DAYS}",
                        kw.value.pos,
                    )
                value = int(value)
            out[kw.name] = (value, kw.value.pos)
        return out

    def window(self, table: ir.Table, ts: str, within_days: int | None) -> ir.Table:
        end = datetime(self.as_of.year, self.as_of.month, self.as_of.day, tzinfo=UTC)
        cond = [table[ts] < ibis.literal(end)]
        if within_days is not None:
            cond.append(table[ts] >= ibis.literal(end - timedelta(days=within_days)))
        return table.filter(cond)

    def require_table(self, name: str, node: dsl.Call) -> ir.Table:
        table = self.catalog.table(name)
        if table is None:
            raise error_at(
                f"{node.name}() needs the {name} table, which has no data yet (ingest {name})", node.pos
            )
        return table

    def compile_inner(self, text: str, name: str) -> CompiledRule:
        """Segment ``name``'s rule compiled into this one (``in_segment``): same date and
        resolver, ``name`` added to the stack that refuses cycles."""
        return compile_rule(
            text, self.catalog, as_of=self.as_of, resolve_segment=self.resolver, _stack=(*self.stack, name)
        )


def _op_text(op: str) -> str:
    return "=" if op == "==" else op
