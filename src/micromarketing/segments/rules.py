"""Compile a parsed segment rule into Ibis expressions over the warehouse.

A rule is evaluated over the *base*: the ``profiles`` table (one row per customer, prospects
included) — or ``customers`` before any profile was built — left-joined to the ``customers``
attributes the rule mentions.  Behaviour functions (``bought``, ``viewed``, ``events``,
``orders``) and ``in_segment`` become small per-customer aggregates left-joined onto that base,
all relative to the evaluation's as-of date, which is an explicit input (default: the profiles'
``as_of``).  The same expression runs on DuckDB and on Spark because it only uses portable Ibis
operations (haversine distance is computed with Ibis math functions, divisions go through
``NULLIF`` so Spark's ANSI mode cannot raise, arithmetic is done in float64 so nothing overflows).

This module owns the type rules of the language (what may be compared with what) and the
catalogue of fields and functions; positions in every error come from the syntax tree.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from micromarketing.errors import DataError, RuleError
from micromarketing.exprs import EARTH_RADIUS_KM, haversine_km
from micromarketing.profiles.build import PROFILE_COLUMNS
from micromarketing.profiles.clv import CLV_COLUMNS
from micromarketing.segments import dsl
from micromarketing.segments.dsl import Pos, error_at
from micromarketing.store.schema import CHANNELS, EVENT_TYPES, ORDER_CHANNELS

MAX_WITHIN_DAYS = 36_500

# Columns the profile builder writes only once a CLV model is fitted: naming one before that gets
# a precise message instead of a did-you-mean.
CLV_FIELDS = CLV_COLUMNS
PROFILE_FIELDS = tuple(c for c in PROFILE_COLUMNS if c not in {"customer_id", "as_of"})
FIELD_ALIASES = {"last_order": "last_order_at", "first_order": "first_order_at"}
# Columns never offered as rule fields (the profile snapshot date is the `as_of()` function).
HIDDEN_COLUMNS = frozenset({"as_of"})


@dataclass(frozen=True)
class SegmentRef:
    """What :func:`compile_rule` needs to know about another segment for ``in_segment(name)``."""

    name: str
    kind: str  # rule | discovered
    version: int
    rule: str = ""


SegmentResolver = Callable[[str], SegmentRef | None]


class Catalog:
    """The warehouse tables a rule can see, looked up once and cached (one per evaluation batch)."""

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse
        self._names: set[str] | None = None
        self._tables: dict[str, ir.Table] = {}
        self._profile_as_of: date | None | bool = False
        self._stores: dict[str, tuple[float, float] | None] = {}

    @property
    def dialect(self) -> str:
        return str(self.warehouse.backend_name)

    def has(self, name: str) -> bool:
        if self._names is None:
            self._names = set(self.warehouse.con.list_tables())
        return name in self._names

    def table(self, name: str) -> ir.Table | None:
        if name not in self._tables:
            if not self.has(name):
                return None
            self._tables[name] = self.warehouse.con.table(name)
        return self._tables[name]

    def refresh(self) -> None:
        """Forget cached tables (after a table was created or replaced)."""
        self._names = None
        self._tables.clear()
        self._profile_as_of = False

    def profile_as_of(self) -> date | None:
        """The as-of date of the profiles table, if profiles exist.

        The profile builder replaces the whole table with one snapshot (every row has the same
        ``as_of``), so one row answers it: a full ``max()`` would cost a scan of every profile.
        """
        if self._profile_as_of is False:
            profiles = self.table("profiles")
            value = None
            if profiles is not None and "as_of" in profiles.columns:
                first = profiles.select("as_of").limit(1).to_pyarrow()
                value = _to_date(first.column(0)[0].as_py()) if first.num_rows else None
            self._profile_as_of = value
        return self._profile_as_of  # type: ignore[return-value]

    def default_as_of(self) -> date:
        """The profiles' as-of date, else the day after the last order, else today (UTC)."""
        found = self.profile_as_of()
        if found is not None:
            return found
        tx = self.table("transactions")
        if tx is not None:
            last = _to_date(tx.ordered_at.max().execute())
            if last is not None:
                return last + timedelta(days=1)
        return datetime.now(UTC).date()

    def store_location(self, store_id: str) -> tuple[float, float] | None:
        if store_id not in self._stores:
            stores = self.table("stores")
            loc = None
            if stores is not None:
                rows = stores.filter(stores.store_id == store_id).select("lat", "lon").limit(1).to_pyarrow()
                if rows.num_rows:
                    lat, lon = rows.column("lat")[0].as_py(), rows.column("lon")[0].as_py()
                    if lat is not None and lon is not None:
                        loc = (float(lat), float(lon))
            self._stores[store_id] = loc
        return self._stores[store_id]

    def store_ids(self) -> list[str]:
        stores = self.table("stores")
        if stores is None:
            return []
        return [str(v) for v in stores.store_id.to_pyarrow().to_pylist() if v is not None]

    def universe(self) -> ir.Table:
        """The table whose rows are the population: profiles, else customers."""
        for name in ("profiles", "customers"):
            table = self.table(name)
            if table is not None:
                return table
        raise DataError("no customers yet: ingest customers (and run `profile`) before using segments")

    def fields(self) -> dict[str, str]:
        """Rule field name -> the table it comes from (profiles first, then customers)."""
        out: dict[str, str] = {}
        profiles = self.table("profiles")
        if profiles is not None:
            out.update({c: "profiles" for c in profiles.columns if c not in HIDDEN_COLUMNS})
        customers = self.table("customers")
        if customers is not None:
            for c in customers.columns:
                out.setdefault(c, "customers")
        return out

    def base(self, needed: set[str] | None = None) -> ir.Table:
        """The universe left-joined to the ``customers`` columns in ``needed`` (all if None)."""
        universe = self.universe()
        customers = self.table("customers")
        # Hidden columns are never resolvable as fields, so the universe need not be projected
        # (fewer nodes to compile: this is on the path of every count).
        if customers is None or universe is customers:
            return universe
        extra = [
            c for c, src in self.fields().items() if src == "customers" and (needed is None or c in needed)
        ]
        keep = [c for c in universe.columns if c not in HIDDEN_COLUMNS]
        if not extra:
            return universe
        right = customers.select("customer_id", *extra)
        joined = universe.left_join(right, universe.customer_id == right.customer_id)
        return joined.select(*[universe[c] for c in keep], *[right[c] for c in extra])


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
    return _Compiler(catalog, as_of, resolve_segment, _stack).compile(text, tree)


# ---------------------------------------------------------------------------------------------
# values during compilation
# ---------------------------------------------------------------------------------------------
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


def _kind_of(dtype: Any) -> str:
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
class _Behaviour:
    """One behaviour call turned into a per-customer aggregate column of the base."""

    column: str
    table: ir.Table  # customer_id + column
    kind: str  # bool | number
    default: Any


class _Compiler:
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
        self.behaviours: dict[dsl.Call, _Behaviour] = {}
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
            return V(_kind_of(col.type()), node.pos, name, expr=col)
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
            return V("date", v.pos, v.label, lit=_parse_date(v.lit, v.pos))
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


# ---------------------------------------------------------------------------------------------
# scalar functions
# ---------------------------------------------------------------------------------------------
def _fn_days_since(c: _Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "days_since(last_order_at)")
    d = c.as_date(c.value(node.args[0]), "days_since()")
    asof = ibis.literal(c.as_of)
    return V("number", node.pos, f"days_since({d.label})", expr=asof.delta(d.e(), unit="day"))


def _fn_as_of(c: _Compiler, node: dsl.Call) -> V:
    _arity(node, 0, f"{node.name}()")
    return V("date", node.pos, f"{node.name}()", lit=c.as_of)


def _fn_date(c: _Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "date('2024-01-31')")
    text = c.literal_arg(node.args[0], "text", "the argument of date()")
    return V("date", node.pos, f"date({text!r})", lit=_parse_date(text, node.args[0].pos))


def _fn_case(c: _Compiler, node: dsl.Call) -> V:
    _arity(node, 1, f"{node.name}(city)")
    v = c.value(node.args[0])
    if v.kind != "text":
        raise error_at(f"{node.name}() needs text but found {KIND_NAMES[v.kind]}", v.pos)
    if v.is_lit:
        return V("text", node.pos, v.label, lit=v.lit.lower() if node.name == "lower" else v.lit.upper())
    return V(
        "text",
        node.pos,
        f"{node.name}({v.label})",
        expr=v.e().lower() if node.name == "lower" else v.e().upper(),
    )


def _fn_store(c: _Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "store('S012')")
    store_id = c.literal_arg(node.args[0], "text", "the argument of store()")
    loc = c.catalog.store_location(store_id)
    if loc is None:
        raise error_at(
            f"unknown store {store_id!r}{did_you_mean(store_id, c.catalog.store_ids())}", node.args[0].pos
        )
    return V("point", node.pos, f"store({store_id!r})", lit=loc)


def _point_and_rest(
    c: _Compiler, node: dsl.Call, n_rest: int, usage: str
) -> tuple[tuple[float, float], list[Any]]:
    args = list(node.args)
    if node.kwargs:
        raise error_at(f"{node.name}() takes positional arguments: {usage}", node.kwargs[0].pos)
    if args and isinstance(args[0], dsl.Call) and args[0].name == "store":
        point = c.value(args[0]).lit
        rest = args[1:]
    elif len(args) >= 2:
        lat = c.literal_arg(args[0], "number", "latitude")
        lon = c.literal_arg(args[1], "number", "longitude")
        if not -90 <= lat <= 90:
            raise error_at(f"latitude {lat} is outside -90..90", args[0].pos)
        if not -180 <= lon <= 180:
            raise error_at(f"longitude {lon} is outside -180..180", args[1].pos)
        point, rest = (float(lat), float(lon)), args[2:]
    else:
        raise error_at(f"{node.name}() expects {usage}", node.pos)
    if len(rest) != n_rest:
        raise error_at(f"{node.name}() expects {usage}", node.pos)
    return point, [c.literal_arg(a, "number", "the distance in km") for a in rest]


def _fn_distance(c: _Compiler, node: dsl.Call) -> V:
    point, _ = _point_and_rest(c, node, 0, "distance_km(store('S012')) or distance_km(lat, lon)")
    return V("number", node.pos, "distance_km(…)", expr=haversine_km(c.base["lat"], c.base["lon"], *point))  # type: ignore[index]


def _fn_within(c: _Compiler, node: dsl.Call) -> V:
    point, (km,) = _point_and_rest(c, node, 1, "within_km(store('S012'), 5) or within_km(48.85, 2.35, 3)")
    if km <= 0:
        raise error_at("the distance must be positive", node.args[-1].pos)
    # A bounding-box test first lets the engine skip most rows before the trigonometry.  The box
    # is the exact extent of the spherical cap (angular radius r) widened by 1 %: latitude ±r, and
    # longitude ±asin(sin r / cos lat0) unless the cap reaches a pole or crosses the antimeridian.
    r = km / EARTH_RADIUS_KM
    lat, lon = c.base["lat"], c.base["lon"]  # type: ignore[index]
    dlat = math.degrees(r) * 1.01
    box = lat.between(point[0] - dlat, point[0] + dlat)
    coslat = math.cos(math.radians(point[0]))
    if r < math.pi / 2 and math.sin(r) < coslat:
        dlon = math.degrees(math.asin(math.sin(r) / coslat)) * 1.01
        if abs(point[1]) + dlon <= 180:
            box = box & lon.between(point[1] - dlon, point[1] + dlon)
    expr = box & (haversine_km(lat, lon, *point) <= km)
    return V("bool", node.pos, f"within_km(…, {km})", expr=expr)


def _arity(node: dsl.Call, n: int, usage: str) -> None:
    if len(node.args) != n or node.kwargs:
        raise error_at(f"{node.name}() expects {usage}", node.pos)


# ---------------------------------------------------------------------------------------------
# behaviour functions (per-customer aggregates joined onto the base)
# ---------------------------------------------------------------------------------------------
TX_ARGS = {"category": "text", "product": "text", "channel": "text", "store": "text", "within_days": "days"}
EVENT_ARGS = {"type": "text", "channel": "text", "product": "text", "campaign": "text", "within_days": "days"}
VIEW_ARGS = {"product": "text", "category": "text", "within_days": "days"}


def _check_choice(value: str, choices: tuple[str, ...], what: str, pos: Pos) -> None:
    if value not in choices:
        raise error_at(
            f"unknown {what} {value!r}{did_you_mean(value, list(choices))}; "
            f"expected one of {', '.join(choices)}",
            pos,
        )


def _transactions(c: _Compiler, node: dsl.Call) -> ir.Table:
    args = c.kwargs(node, TX_ARGS)
    tx = c.require_table("transactions", node)
    if "channel" in args:
        _check_choice(args["channel"][0], ORDER_CHANNELS, "order channel", args["channel"][1])
    conds = []
    for arg, col in (
        ("category", "category"),
        ("product", "product_id"),
        ("channel", "channel"),
        ("store", "store_id"),
    ):
        if arg in args:
            conds.append(tx[col] == args[arg][0])
    if conds:
        tx = tx.filter(conds)
    return c.window(tx, "ordered_at", args.get("within_days", (None,))[0])


def _events(c: _Compiler, node: dsl.Call, allowed: dict[str, str], fixed_type: str | None) -> ir.Table:
    args = c.kwargs(node, allowed)
    ev = c.require_table("events", node)
    conds = []
    if fixed_type is not None:
        conds.append(ev.event_type == fixed_type)
    if "type" in args:
        _check_choice(args["type"][0], EVENT_TYPES, "event type", args["type"][1])
        conds.append(ev.event_type == args["type"][0])
    if "channel" in args:
        _check_choice(args["channel"][0], CHANNELS, "channel", args["channel"][1])
        conds.append(ev.channel == args["channel"][0])
    if "product" in args:
        conds.append(ev.product_id == args["product"][0])
    if "campaign" in args:
        conds.append(ev.campaign_id == args["campaign"][0])
    if "category" in args:
        products = c.require_table("products", node)
        conds.append(ev.product_id.isin(products.filter(products.category == args["category"][0]).product_id))
    if conds:
        ev = ev.filter(conds)
    return c.window(ev, "occurred_at", args.get("within_days", (None,))[0])


def _flag(rows: ir.Table, column: str) -> _Behaviour:
    table = rows.select("customer_id").distinct().mutate(**{column: ibis.literal(True)})
    return _Behaviour(column, table, "bool", False)


def _count(rows: ir.Table, column: str, distinct: str | None = None) -> _Behaviour:
    metric = rows[distinct].nunique() if distinct else rows.count()
    table = rows.group_by("customer_id").aggregate(**{column: metric})
    return _Behaviour(column, table, "number", 0)


def _beh_bought(c: _Compiler, node: dsl.Call, column: str) -> _Behaviour:
    return _flag(_transactions(c, node), column)


def _beh_orders(c: _Compiler, node: dsl.Call, column: str) -> _Behaviour:
    return _count(_transactions(c, node), column, distinct="order_id")


def _beh_viewed(c: _Compiler, node: dsl.Call, column: str) -> _Behaviour:
    return _flag(_events(c, node, VIEW_ARGS, "product_view"), column)


def _beh_events(c: _Compiler, node: dsl.Call, column: str) -> _Behaviour:
    return _count(_events(c, node, EVENT_ARGS, None), column)


def _beh_in_segment(c: _Compiler, node: dsl.Call, column: str) -> _Behaviour:
    _arity(node, 1, "in_segment('vip')")
    name = c.literal_arg(node.args[0], "text", "the segment name")
    if name in c.stack:
        cycle = " -> ".join([*c.stack, name])
        raise error_at(f"segment {name!r} refers to itself ({cycle})", node.pos)
    ref = c.resolver(name) if c.resolver is not None else None
    if ref is None:
        raise error_at(f"unknown segment {name!r}", node.args[0].pos)
    c.segments.append(name)
    if ref.kind == "rule" and ref.rule:
        try:
            inner = compile_rule(
                ref.rule, c.catalog, as_of=c.as_of, resolve_segment=c.resolver, _stack=(*c.stack, name)
            )
        except RuleError as exc:
            raise error_at(f"segment {name!r} no longer compiles: {exc}", node.pos) from None
        for f, _pos in inner.fields.items():
            c.fields.setdefault(f, node.pos)
        c.segments.extend(inner.segments)
        return _flag(inner.members(), column)
    members = c.catalog.table("segment_members")
    if members is None:
        raise error_at(f"segment {name!r} has no materialised membership", node.pos)
    rows = members.filter(
        [members.segment == name, members.version == ref.version, members.as_of <= ibis.literal(c.as_of)]
    )
    latest = _to_date(rows.as_of.max().execute())
    if latest is None:  # never materialised on or before as_of, or retired: no members
        c.warnings.append(f"segment {name!r} has no members as of {c.as_of}")
        return _flag(rows.filter(ibis.literal(False)), column)
    return _flag(rows.filter(rows.as_of == ibis.literal(latest, type="date")), column)


SCALAR_FUNCTIONS: dict[str, Callable[[_Compiler, dsl.Call], V]] = {
    "days_since": _fn_days_since,
    "as_of": _fn_as_of,
    "today": _fn_as_of,
    "date": _fn_date,
    "lower": _fn_case,
    "upper": _fn_case,
    "store": _fn_store,
    "distance_km": _fn_distance,
    "within_km": _fn_within,
}
BEHAVIOURS: dict[str, Callable[[_Compiler, dsl.Call, str], _Behaviour]] = {
    "bought": _beh_bought,
    "orders": _beh_orders,
    "viewed": _beh_viewed,
    "events": _beh_events,
    "in_segment": _beh_in_segment,
}
GEO_FUNCTIONS = ("within_km", "distance_km")
FUNCTIONS = {**SCALAR_FUNCTIONS, **BEHAVIOURS}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def did_you_mean(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or an empty string.

    Candidates are scored with difflib against the whole name and against its leading part
    (``clv`` of ``clv_12m``), so abbreviations such as ``cltv`` find ``clv_12m``.
    """
    target = name.lower()
    best, best_score = None, 0.0
    for cand in candidates:
        low = cand.lower()
        score = difflib.SequenceMatcher(None, target, low).ratio()
        head = low.split("_")[0]
        if head != low and len(head) >= 3:
            score = max(score, difflib.SequenceMatcher(None, target, head).ratio() - 0.05)
        score += 0.01 * len(os.path.commonprefix([target, low]))  # tie-break: S013 -> S012, not S001
        if score > best_score:
            best, best_score = cand, score
    return f"; did you mean {best!r}?" if best is not None and best_score >= 0.6 else ""


def _op_text(op: str) -> str:
    return "=" if op == "==" else op


def _parse_date(text: str, pos: Pos) -> date:
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, TypeError):
        raise error_at(f"expected a date written YYYY-MM-DD but found {text!r}", pos) from None


def _to_date(value: Any) -> date | None:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if hasattr(value, "date"):
        return value.date()  # pandas Timestamp
    return date.fromisoformat(str(value)[:10])
