"""The function library of the rule language: scalar functions (dates, text, stores, distances)
and behaviour functions (``bought``, ``orders``, ``viewed``, ``events``, ``in_segment``), each a
per-customer aggregate left-joined onto the base by the compiler.

Distances use :func:`micromarketing.exprs.haversine_km` (portable Ibis math), with a bounding box
first so the engines can prune rows before the trigonometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from micromarketing.errors import RuleError
from micromarketing.exprs import EARTH_RADIUS_KM, haversine_km
from micromarketing.segments import dsl
from micromarketing.segments.catalog import did_you_mean, to_date
from micromarketing.segments.dsl import Pos, error_at
from micromarketing.segments.values import KIND_NAMES, Behaviour, V, parse_date
from micromarketing.store.schema import CHANNELS, EVENT_TYPES, ORDER_CHANNELS

if TYPE_CHECKING:  # the compiler calls these functions with itself
    from micromarketing.segments.rules import Compiler

def _fn_days_since(c: Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "days_since(last_order_at)")
    d = c.as_date(c.value(node.args[0]), "days_since()")
    asof = ibis.literal(c.as_of)
    return V("number", node.pos, f"days_since({d.label})", expr=asof.delta(d.e(), unit="day"))


def _fn_as_of(c: Compiler, node: dsl.Call) -> V:
    _arity(node, 0, f"{node.name}()")
    return V("date", node.pos, f"{node.name}()", lit=c.as_of)


def _fn_date(c: Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "date('2024-01-31')")
    text = c.literal_arg(node.args[0], "text", "the argument of date()")
    return V("date", node.pos, f"date({text!r})", lit=parse_date(text, node.args[0].pos))


def _fn_case(c: Compiler, node: dsl.Call) -> V:
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


def _fn_store(c: Compiler, node: dsl.Call) -> V:
    _arity(node, 1, "store('S012')")
    store_id = c.literal_arg(node.args[0], "text", "the argument of store()")
    loc = c.catalog.store_location(store_id)
    if loc is None:
        raise error_at(
            f"unknown store {store_id!r}{did_you_mean(store_id, c.catalog.store_ids())}", node.args[0].pos
        )
    return V("point", node.pos, f"store({store_id!r})", lit=loc)


def _point_and_rest(
    c: Compiler, node: dsl.Call, n_rest: int, usage: str
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


def _fn_distance(c: Compiler, node: dsl.Call) -> V:
    point, _ = _point_and_rest(c, node, 0, "distance_km(store('S012')) or distance_km(lat, lon)")
    return V("number", node.pos, "distance_km(…)", expr=haversine_km(c.base["lat"], c.base["lon"], *point))  # type: ignore[index]


def _fn_within(c: Compiler, node: dsl.Call) -> V:
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


def _transactions(c: Compiler, node: dsl.Call) -> ir.Table:
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


def _events(c: Compiler, node: dsl.Call, allowed: dict[str, str], fixed_type: str | None) -> ir.Table:
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


def _flag(rows: ir.Table, column: str) -> Behaviour:
    table = rows.select("customer_id").distinct().mutate(**{column: ibis.literal(True)})
    return Behaviour(column, table, "bool", False)


def _count(rows: ir.Table, column: str, distinct: str | None = None) -> Behaviour:
    metric = rows[distinct].nunique() if distinct else rows.count()
    table = rows.group_by("customer_id").aggregate(**{column: metric})
    return Behaviour(column, table, "number", 0)


def _beh_bought(c: Compiler, node: dsl.Call, column: str) -> Behaviour:
    return _flag(_transactions(c, node), column)


def _beh_orders(c: Compiler, node: dsl.Call, column: str) -> Behaviour:
    return _count(_transactions(c, node), column, distinct="order_id")


def _beh_viewed(c: Compiler, node: dsl.Call, column: str) -> Behaviour:
    return _flag(_events(c, node, VIEW_ARGS, "product_view"), column)


def _beh_events(c: Compiler, node: dsl.Call, column: str) -> Behaviour:
    return _count(_events(c, node, EVENT_ARGS, None), column)


def _beh_in_segment(c: Compiler, node: dsl.Call, column: str) -> Behaviour:
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
            inner = c.compile_inner(ref.rule, name)
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
    latest = to_date(rows.as_of.max().execute())
    if latest is None:  # never materialised on or before as_of, or retired: no members
        c.warnings.append(f"segment {name!r} has no members as of {c.as_of}")
        return _flag(rows.filter(ibis.literal(False)), column)
    return _flag(rows.filter(rows.as_of == ibis.literal(latest, type="date")), column)


SCALAR_FUNCTIONS: dict[str, Callable[[Compiler, dsl.Call], V]] = {
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
BEHAVIOURS: dict[str, Callable[[Compiler, dsl.Call, str], Behaviour]] = {
    "bought": _beh_bought,
    "orders": _beh_orders,
    "viewed": _beh_viewed,
    "events": _beh_events,
    "in_segment": _beh_in_segment,
}
GEO_FUNCTIONS = ("within_km", "distance_km")
FUNCTIONS = {**SCALAR_FUNCTIONS, **BEHAVIOURS}
