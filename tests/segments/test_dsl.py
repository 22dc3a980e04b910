"""The rule parser: structure, error positions, and property tests (Hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromarketing.errors import PolicyError, RuleError
from micromarketing.segments import dsl
from micromarketing.segments.rules import Catalog, compile_rule


def test_precedence_not_and_or():
    tree = dsl.parse("not a = 1 and b = 2 or c = 3")
    assert isinstance(tree, dsl.Binary) and tree.op == "or"
    left = tree.left
    assert isinstance(left, dsl.Binary) and left.op == "and"
    assert isinstance(left.left, dsl.Unary) and left.left.op == "not"


def test_between_binds_its_own_and():
    tree = dsl.parse("age between 25 and 34 and city = 'Lyon'")
    assert tree.op == "and" and isinstance(tree.left, dsl.Between)
    assert tree.left.low.value == 25 and tree.left.high.value == 34


def test_calls_keywords_comments_and_positions():
    tree = dsl.parse("-- lapsed runners\nBOUGHT(category = 'running', within_days=90)\n  AND x IS NOT NULL")
    assert tree.op == "and"
    call = tree.left
    assert isinstance(call, dsl.Call) and call.name == "bought"
    assert [k.name for k in call.kwargs] == ["category", "within_days"]
    assert call.pos == dsl.Pos(2, 1, 18)
    assert isinstance(tree.right, dsl.IsNull) and tree.right.negated
    assert tree.right.operand.pos.line == 3 and tree.right.operand.pos.col == 7


def test_text_literals_quotes_and_escapes():
    tree = dsl.parse("""name in ('O''Brien', "d\\"x", 'a\\\\b')""")
    assert [i.value for i in tree.items] == ["O'Brien", 'd"x', "a\\b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1, col 1: empty rule"),
        ("frequency >", "line 1, col 12: expected a field, a value or '(' but found end of rule"),
        ("(frequency > 3", "line 1, col 15: expected ')' but found end of rule"),
        ("city = 'Lyon", "line 1, col 8: unterminated text literal"),
        ("a = 1 and\n b ~ 2", "line 2, col 4: unexpected character '~'"),
        ("age between 1 or 2", "line 1, col 15: expected 'and' in 'between … and …' but found 'or'"),
        ("x is nul", "line 1, col 6: expected 'null' after 'is' but found 'nul'"),
        ("bought(within_days=90, 'x')", "positional argument after a named argument"),
        ("f(a=1, a=2)", "argument 'a' given twice"),
        ("90d > 3", "unexpected 'd' after number '90'"),
        ("x not like 'a'", "expected 'in', 'between', 'contains' or 'starts_with' after 'not'"),
        ("(" * 200 + "a", "nested too deeply"),
    ],
)
def test_syntax_errors(text, message):
    with pytest.raises(RuleError) as info:
        dsl.parse(text)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------
ALPHABET = st.sampled_from(
    list("abcdefgxyz_0123456789 ()'\",.=<>!+-*/\n\t")
    + [
        "and",
        "or",
        "not",
        "in",
        "between",
        "is",
        "null",
        "frequency",
        "city",
        "bought(",
        "within_km(",
        "é",
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.lists(ALPHABET, max_size=25).map(" ".join),
        st.lists(ALPHABET, max_size=25).map("".join),
    )
)
def test_arbitrary_text_only_raises_rule_errors_inside_the_input(text):
    try:
        dsl.parse(text)
    except RuleError as exc:
        lines = text.split("\n")
        assert 1 <= exc.line <= len(lines)
        assert 1 <= exc.column <= len(lines[exc.line - 1]) + 1


NUM_FIELDS = ["frequency", "monetary", "recency_days", "age", "clv", "lat"]
TEXT_FIELDS = ["city", "postcode", "rfm_segment", "age_band", "interests", "email"]
numbers = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8).map(
    lambda s: "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"
)


def _num(n):
    return f"({n})" if n < 0 else str(n)


num_expr = st.one_of(
    st.sampled_from(NUM_FIELDS),
    st.sampled_from(
        [
            "days_since(last_order_at)",
            "distance_km(store('S001'))",
            "distance_km(45.7, 4.8)",
            "events(type='email_click', within_days=30)",
            "orders(within_days=365)",
            "orders(category='running')",
            "monetary / frequency",
            "frequency * 2 - age",
        ]
    ),
)
atoms = st.one_of(
    st.builds(
        lambda f, op, n: f"{f} {op} {_num(n)}",
        num_expr,
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        numbers,
    ),
    st.builds(lambda f, a, b: f"{f} between {_num(a)} and {_num(b)}", num_expr, numbers, numbers),
    st.builds(
        lambda f, op, t: f"{f} {op} {t}",
        st.sampled_from(TEXT_FIELDS),
        st.sampled_from(["=", "!=", "contains", "starts_with", "ends_with", "not contains"]),
        texts,
    ),
    st.builds(
        lambda f, ts: f"{f} in ({', '.join(ts)})",
        st.sampled_from(TEXT_FIELDS),
        st.lists(texts, min_size=1, max_size=3),
    ),
    st.builds(
        lambda f, neg: f"{f} is {'not ' if neg else ''}null",
        st.sampled_from(NUM_FIELDS + TEXT_FIELDS),
        st.booleans(),
    ),
    st.builds(lambda c, d: f"bought(category={c}, within_days={d})", texts, st.integers(1, 1000)),
    st.builds(lambda p, d: f"viewed(product={p}, within_days={d})", texts, st.integers(1, 1000)),
    st.builds(lambda km: f"within_km(store('S012'), {km})", st.integers(1, 2000)),
    st.builds(lambda d: f"last_order_at >= as_of() - {d}", st.integers(0, 5000)),
    st.just("last_order_at < '2024-06-01'"),
)
rules = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or"]), inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules)
def test_generated_valid_rules_round_trip(shared_ws, rule):
    compiled = compile_rule(rule, Catalog(shared_ws.warehouse))
    n = compiled.matches().count().execute()
    assert 0 <= n <= 11


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=40), st.lists(ALPHABET, max_size=15).map(" ".join)))
def test_compiling_arbitrary_text_only_raises_rule_errors(shared_ws, text):
    try:
        compiled = compile_rule(text, Catalog(shared_ws.warehouse))
    except (RuleError, PolicyError):
        return
    compiled.matches().count().execute()
