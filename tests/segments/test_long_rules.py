"""Long rules (issue #12, item 6): flat chains of any length compile, deep nesting keeps its limit.

The parser turns a chain of more than ``dsl.LEFT_DEEP_CHAIN`` operands into a balanced tree, so
the recursive compiler and Ibis stay shallow.  The property tests generate flat chains (boolean
chains of comparisons, sums and products of fields and numbers) and check the compiled rule's
members against a reference evaluation in plain Python (three-valued logic, nulls propagate)
over the population of ``population.py``.
"""

from __future__ import annotations

import operator
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mm_segments_population import PROFILES

from micromarketing.errors import RuleError
from micromarketing.segments import dsl
from micromarketing.segments.rules import Catalog, compile_rule

ROWS = [
    {k: (None if v != v or v is None else v) for k, v in row.items()}  # NaN -> None
    for row in PROFILES.drop(columns=["_last"]).to_dict("records")
]
ALL_IDS = {row["customer_id"] for row in ROWS}
NUMERIC = ("recency_days", "frequency", "monetary", "age", "clv")
INTEGRAL = ("recency_days", "frequency", "age")  # sums of these are exact in float64


def members(ws, rule: str) -> set[str]:
    compiled = compile_rule(rule, Catalog(ws.warehouse))
    return set(compiled.members().to_pyarrow().column("customer_id").to_pylist())


def _max_chain(term: str, joiner: str, tail: str = "") -> str:
    """The longest ``term joiner term …`` (plus ``tail``) within the rule-length limit."""
    count = (dsl.MAX_RULE_LENGTH - len(tail) + len(joiner)) // (len(term) + len(joiner))
    text = joiner.join([term] * count) + tail
    assert len(text) <= dsl.MAX_RULE_LENGTH
    return text


# -- the examples ------------------------------------------------------------------------
def test_500_term_or_chain_compiles_and_evaluates(shared_ws):
    assert members(shared_ws, " or ".join(["age > 1"] * 500)) == ALL_IDS
    assert members(shared_ws, " or ".join(["age > 60"] * 499 + ["frequency >= 12"])) == {"C07", "C01"}


def test_500_term_sum_compiles_and_evaluates(shared_ws):
    # 500 * frequency > 3000  <=>  frequency > 6
    assert members(shared_ws, " + ".join(["frequency"] * 500) + " > 3000") == {"C01", "C05"}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (_max_chain("age > 1", " or "), ALL_IDS),
        (_max_chain("age > 1", " and "), ALL_IDS),
        (_max_chain("frequency", " + ", " > 0"), ALL_IDS - {"C11"}),
        (_max_chain("frequency", " - ", " < 0"), ALL_IDS - {"C11"}),
        (_max_chain("1", " * ", " * frequency > 2"), {r["customer_id"] for r in ROWS if r["frequency"] > 2}),
        # a zero divisor anywhere makes the quotient null, as in the left-deep chain
        ("monetary / frequency" + " / 2" * 40 + " >= 0", ALL_IDS - {"C11"}),
    ],
    ids=["or", "and", "sum", "difference", "product", "quotient"],
)
def test_chains_up_to_the_length_limit_compile(shared_ws, rule, expected):
    assert members(shared_ws, rule) == expected


def test_short_chains_keep_their_left_deep_tree():
    tree = dsl.parse(" or ".join(f"x{i} = 1" for i in range(dsl.LEFT_DEEP_CHAIN)))
    depth = 0
    while isinstance(tree, dsl.Binary) and tree.op == "or":
        assert not (isinstance(tree.right, dsl.Binary) and tree.right.op == "or")
        tree, depth = tree.left, depth + 1
    assert depth == dsl.LEFT_DEEP_CHAIN - 1
    sub = dsl.parse("a - b - c")  # subtraction stays left-associative
    assert sub.op == "-" and sub.left.op == "-" and sub.left.left.name == "a"


def test_deep_nesting_keeps_a_clear_limit():
    with pytest.raises(RuleError, match="nested too deeply"):
        dsl.parse("(" * 200 + "a = 1" + ")" * 200)
    # 60 levels of parentheses are allowed, but not 60 levels each holding a 15-term chain
    deep = "(" * 60 + "x" + (" + x" * 14 + ")") * 60 + " > 1"
    with pytest.raises(RuleError, match="nested too deeply"):
        dsl.parse(deep)


def test_tree_depth_limit_is_within_what_compiles(shared_ws):
    # a tree exactly at the limit (right-nested sums) still compiles and evaluates
    def nested(levels: int) -> str:  # each level: a left-deep 15-operand chain starting with '( … )'
        return "(" * levels + "frequency" + (" + 0 - 0" * 7 + ")") * levels + " > 5"

    levels = 1
    while True:
        try:
            dsl.parse(nested(levels + 1))
        except RuleError:
            break
        levels += 1
    rule = nested(levels)
    assert dsl.tree_depth(dsl.parse(rule)) > dsl.MAX_TREE_DEPTH - 20
    assert members(shared_ws, rule) == {r["customer_id"] for r in ROWS if r["frequency"] > 5}


# -- parser properties ---------------------------------------------------------------------------
def _flatten(node: dsl.Node, op: str) -> list[dsl.Node]:
    out, stack = [], [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dsl.Binary) and cur.op == op:
            stack.extend([cur.right, cur.left])
        else:
            out.append(cur)
    return out


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["and", "or", "+", "*"]), n=st.integers(1, 1000))
def test_flat_chains_parse_shallow_and_in_order(op, n):
    tree = dsl.parse(f" {op} ".join(f"f{i}" for i in range(n)))
    assert dsl.tree_depth(tree) <= dsl.LEFT_DEEP_CHAIN + 12
    assert [leaf.name for leaf in _flatten(tree, op)] == [f"f{i}" for i in range(n)]


# -- compiled chains against a reference evaluation ------------------------------------------------
CMP = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
CMP |= {"=": operator.eq, "!=": operator.ne}


def _and(a, b):
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a, b):
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


comparisons = st.tuples(st.sampled_from(NUMERIC), st.sampled_from(sorted(CMP)), st.integers(-5, 500))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    groups=st.lists(st.lists(comparisons, min_size=1, max_size=40), min_size=1, max_size=40),
)
def test_boolean_chains_match_reference(shared_ws, groups):
    """``c1 and c2 … or c3 and …``: an or-chain of and-chains, both possibly long."""
    rule = " or ".join(" and ".join(f"{f} {op} {v}" for f, op, v in group) for group in groups)
    if len(rule) > dsl.MAX_RULE_LENGTH:
        return
    expected = set()
    for row in ROWS:
        result = False
        for group in groups:
            conj = True
            for f, op, v in group:
                conj = _and(conj, None if row[f] is None else CMP[op](row[f], v))
            result = _or(result, conj)
        if result is True:
            expected.add(row["customer_id"])
    assert members(shared_ws, rule) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.sampled_from(INTEGRAL),
    links=st.lists(
        st.tuples(st.sampled_from(["+", "-"]), st.one_of(st.sampled_from(INTEGRAL), st.integers(0, 50))),
        min_size=1,
        max_size=300,
    ),
    threshold=st.integers(-2000, 2000),
)
def test_sum_chains_match_reference(shared_ws, first, links, threshold):
    rule = first + "".join(f" {op} {t}" for op, t in links) + f" > {threshold}"
    expected = set()
    for row in ROWS:
        total = row[first]
        for op, t in links:
            value = row[t] if isinstance(t, str) else t
            if total is None or value is None:
                total = None
            else:
                total = total + value if op == "+" else total - value
        if total is not None and total > threshold:
            expected.add(row["customer_id"])
    assert members(shared_ws, rule) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.lists(st.sampled_from(INTEGRAL), min_size=1, max_size=6),
    factors=st.lists(st.tuples(st.sampled_from(["*", "/"]), st.sampled_from([1, 2, 4])), max_size=80),
    threshold=st.sampled_from([0, 1, 10, 100, 1000, 10**6]),
)
def test_product_chains_match_reference(shared_ws, fields, factors, threshold):
    """Products of at most six fields and powers of two: exact in float64, so any grouping agrees."""
    links = [("*", f) for f in fields[1:]] + factors
    rule = fields[0] + "".join(f" {op} {t}" for op, t in links) + f" > {threshold}"
    expected = set()
    for row in ROWS:
        value = None if row[fields[0]] is None else Fraction(row[fields[0]])
        for op, t in links:
            x = row[t] if isinstance(t, str) else t
            if value is None or x is None:
                value = None
            else:
                value = value * x if op == "*" else value / x
        if value is not None and value > threshold:
            expected.add(row["customer_id"])
    assert members(shared_ws, rule) == expected
