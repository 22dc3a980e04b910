"""The segment rule language: tokenizer and parser from rule text to a small syntax tree.

A rule is one boolean expression such as::

    rfm_segment in ('champions', 'loyal') and days_since(last_order_at) <= 90
      and within_km(store('S012'), 5) and events(type='email_click', within_days=30) >= 2

This module only turns text into the tree of :class:`Node` objects (with the line and column of
every node); :mod:`micromarketing.segments.rules` type-checks the tree and compiles it to Ibis.

Why hand-written: the grammar is a dozen rules, and a Pratt parser gives exact positions and
"expected X but found Y" messages without a parser-generator dependency.  No user text ever
reaches ``eval`` or an SQL string: the tree is compiled to Ibis expressions, whose literals are
bound by the backend compiler.

Grammar (lowest to highest precedence)::

    rule       := expr EOF
    expr       := expr 'or' expr | expr 'and' expr | 'not' expr | predicate
    predicate  := value (cmp value
                        | ['not'] 'in' '(' value (',' value)* ')'
                        | ['not'] 'between' value 'and' value
                        | ['not'] ('contains' | 'starts_with' | 'ends_with') value
                        | 'is' ['not'] 'null')?
    value      := value ('+' | '-') value | value ('*' | '/') value | '-' value | atom
    atom       := NUMBER | STRING | 'true' | 'false' | 'null' | FIELD
                | NAME '(' [arg (',' arg)*] ')' | '(' expr ')'
    arg        := expr | NAME '=' expr
    cmp        := '=' | '==' | '!=' | '<>' | '<' | '<=' | '>' | '>='

Keywords are case-insensitive; ``--`` starts a comment that runs to the end of the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from micromarketing.errors import RuleError

MAX_RULE_LENGTH = 10_000
MAX_DEPTH = 64

KEYWORDS = frozenset(
    {
        "and",
        "or",
        "not",
        "in",
        "between",
        "is",
        "null",
        "true",
        "false",
        "contains",
        "starts_with",
        "ends_with",
    }
)
COMPARISONS = {"=": "==", "==": "==", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TEXT_MATCHES = ("contains", "starts_with", "ends_with")

# Binding powers of the Pratt parser (higher binds tighter).
BP_OR, BP_AND, BP_NOT, BP_PREDICATE, BP_SUM, BP_PRODUCT, BP_NEG = 10, 20, 30, 40, 50, 60, 70


# --------------------------------------------------------------------------------------------
# syntax tree
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pos:
    """A position in the rule text (1-based line and column, 0-based offset)."""

    line: int
    col: int
    offset: int


@dataclass(frozen=True)
class Node:
    """Base class of the syntax tree; every node knows where it starts."""

    pos: Pos


@dataclass(frozen=True)
class Literal(Node):
    value: Any  # int | float | str | bool | None
    kind: str  # number | text | bool | null


@dataclass(frozen=True)
class FieldRef(Node):
    name: str


@dataclass(frozen=True)
class KwArg:
    name: str
    value: Node
    pos: Pos


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Node, ...] = ()
    kwargs: tuple[KwArg, ...] = ()


@dataclass(frozen=True)
class Unary(Node):
    op: str  # not | neg
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # and | or | == | != | < | <= | > | >= | + | - | * | /
    left: Node
    right: Node


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between(Node):
    operand: Node
    low: Node
    high: Node
    negated: bool = False


@dataclass(frozen=True)
class TextMatch(Node):
    op: str  # contains | starts_with | ends_with
    operand: Node
    pattern: Node
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool = False


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # number | string | name | keyword | op | eof
    text: str
    value: Any
    pos: Pos

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of rule"
        if self.kind == "string":
            return f"text {self.text}"
        return f"'{self.text}'"


_OPS = ("==", "!=", "<>", "<=", ">=", "(", ")", ",", "=", "<", ">", "+", "-", "*", "/")


class _Lines:
    """Maps offsets to (line, column)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def pos(self, offset: int) -> Pos:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return Pos(lo + 1, offset - self.starts[lo] + 1, offset)


def error_at(message: str, pos: Pos) -> RuleError:
    """A :class:`RuleError` pointing at ``pos``."""
    return RuleError(message, line=pos.line, column=pos.col)


def tokenize(text: str) -> list[Token]:
    """Split rule text into tokens; raises :class:`RuleError` at the first bad character."""
    lines = _Lines(text)
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if text.startswith("--", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        start = i
        pos = lines.pos(start)
        if ch.isascii() and (
            ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isascii() and text[i + 1].isdigit())
        ):
            while i < n and text[i].isascii() and text[i].isdigit():
                i += 1
            is_float = False
            if i < n and text[i] == "." and i + 1 < n and text[i + 1].isascii() and text[i + 1].isdigit():
                is_float = True
                i += 1
                while i < n and text[i].isascii() and text[i].isdigit():
                    i += 1
            if i < n and (text[i].isalpha() or text[i] == "_"):
                raise error_at(f"unexpected {text[i]!r} after number {text[start:i]!r}", lines.pos(i))
            raw = text[start:i]
            value: Any = float(raw) if is_float else int(raw)
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                value = float(value)
            tokens.append(Token("number", raw, value, pos))
            continue
        if ch in "'\"":
            quote, i = ch, i + 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise error_at("unterminated text literal (missing closing quote)", pos)
                c = text[i]
                if c == "\\" and i + 1 < n:
                    if ord(text[i + 1]) < 32 and text[i + 1] not in "\t\n" or text[i + 1] == "\x7f":
                        raise error_at(f"control character {text[i + 1]!r} in text literal", lines.pos(i + 1))
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == quote:
                    if i + 1 < n and text[i + 1] == quote:  # doubled quote
                        chars.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                if ord(c) < 32 and c not in "\t\n" or c == "\x7f":
                    raise error_at(f"control character {c!r} in text literal", lines.pos(i))
                chars.append(c)
                i += 1
            tokens.append(Token("string", text[start:i], "".join(chars), pos))
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            lower = word.lower()
            if lower in KEYWORDS:
                tokens.append(Token("keyword", word, lower, pos))
            else:
                tokens.append(Token("name", word, word, pos))
            continue
        for op in _OPS:
            if text.startswith(op, i):
                tokens.append(Token("op", op, op, pos))
                i += len(op)
                break
        else:
            raise error_at(f"unexpected character {ch!r}", pos)
    tokens.append(Token("eof", "", None, lines.pos(n)))
    return tokens


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers ----------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (value is None or tok.value == value)

    def expect(self, kind: str, value: Any, what: str) -> Token:
        tok = self.peek()
        if tok.kind != kind or tok.value != value:
            raise error_at(f"expected {what} but found {tok.describe()}", tok.pos)
        return self.next()

    # -- grammar ----------------------------------------------------------------------------
    def parse_rule(self) -> Node:
        if self.at("eof"):
            raise error_at("empty rule: expected a condition such as frequency >= 3", self.peek().pos)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            hint = ""
            if tok.kind in ("name", "string", "number") or tok.value == "(":
                hint = "; did you forget 'and' / 'or'?"
            raise error_at(f"expected 'and', 'or' or end of rule but found {tok.describe()}{hint}", tok.pos)
        return node

    def expr(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise error_at(f"rule is nested too deeply (more than {MAX_DEPTH} levels)", self.peek().pos)
        try:
            left = self.nud()
            while True:
                tok = self.peek()
                lbp = self.infix_bp(tok)
                if lbp <= min_bp:
                    return left
                if lbp in CHAIN_OPS and tok.value in CHAIN_OPS[lbp]:
                    left = self.chain(left, lbp)
                else:
                    left = self.led(left, tok, lbp)
        finally:
            self.depth -= 1

    def chain(self, first: Node, lbp: int) -> Node:
        """A flat chain of one precedence level (``a or b or …``, ``a + b - c …``), iteratively.

        Every operand is parsed at the next-higher level, so the loop (not recursion) consumes
        the chain, and :func:`build_chain` turns it into a tree that stays shallow however long
        the chain is.
        """
        links: list[tuple[str, Pos, Node]] = []
        ops = CHAIN_OPS[lbp]
        while True:
            tok = self.peek()
            if self.infix_bp(tok) != lbp or tok.value not in ops:
                break
            self.next()
            links.append((tok.value, tok.pos, self.expr(lbp)))
        return build_chain(first, links)

    def infix_bp(self, tok: Token) -> int:
        if tok.kind == "keyword":
            if tok.value == "or":
                return BP_OR
            if tok.value == "and":
                return BP_AND
            if tok.value in ("in", "between", "is", "not") or tok.value in TEXT_MATCHES:
                return BP_PREDICATE
            return 0
        if tok.kind == "op":
            if tok.value in COMPARISONS:
                return BP_PREDICATE
            if tok.value in ("+", "-"):
                return BP_SUM
            if tok.value in ("*", "/"):
                return BP_PRODUCT
        return 0

    def nud(self) -> Node:
        tok = self.next()
        if tok.kind == "number":
            return Literal(tok.pos, tok.value, "number")
        if tok.kind == "string":
            return Literal(tok.pos, tok.value, "text")
        if tok.kind == "keyword":
            if tok.value in ("true", "false"):
                return Literal(tok.pos, tok.value == "true", "bool")
            if tok.value == "null":
                return Literal(tok.pos, None, "null")
            if tok.value == "not":
                return Unary(tok.pos, "not", self.expr(BP_NOT))
            raise error_at(f"expected a field, a value or '(' but found {tok.describe()}", tok.pos)
        if tok.kind == "name":
            if self.at("op", "("):
                return self.call(tok)
            return FieldRef(tok.pos, tok.value)
        if tok.kind == "op":
            if tok.value == "(":
                inner = self.expr(0)
                self.expect("op", ")", "')'")
                return inner
            if tok.value == "-":
                return Unary(tok.pos, "neg", self.expr(BP_NEG))
        raise error_at(f"expected a field, a value or '(' but found {tok.describe()}", tok.pos)

    def call(self, name: Token) -> Node:
        self.expect("op", "(", "'('")
        args: list[Node] = []
        kwargs: list[KwArg] = []
        if not self.at("op", ")"):
            while True:
                tok = self.peek()
                if tok.kind == "name" and self.peek(1).kind == "op" and self.peek(1).value == "=":
                    self.next()
                    self.next()
                    if any(k.name == tok.value for k in kwargs):
                        raise error_at(f"argument {tok.value!r} given twice", tok.pos)
                    kwargs.append(KwArg(tok.value, self.expr(0), tok.pos))
                else:
                    if kwargs:
                        raise error_at("positional argument after a named argument", tok.pos)
                    args.append(self.expr(0))
                if self.at("op", ","):
                    self.next()
                    continue
                break
        self.expect("op", ")", "',' or ')'")
        return Call(name.pos, name.value.lower(), tuple(args), tuple(kwargs))

    def led(self, left: Node, tok: Token, lbp: int) -> Node:
        self.next()  # and / or / + - * / are chains (see chain()); the rest are predicates
        # predicates: non-associative
        if _is_predicate(left):
            raise error_at(
                f"unexpected {tok.describe()}: conditions cannot be chained; combine them with 'and'", tok.pos
            )
        if tok.kind == "op":  # comparison
            return Binary(tok.pos, COMPARISONS[tok.value], left, self.expr(BP_PREDICATE))
        negated = False
        kw = tok.value
        if kw == "not":
            nxt = self.next()
            if nxt.kind != "keyword" or nxt.value not in ("in", "between", *TEXT_MATCHES):
                raise error_at(
                    f"expected 'in', 'between', 'contains' or 'starts_with' after 'not' but found "
                    f"{nxt.describe()}",
                    nxt.pos,
                )
            negated, kw = True, nxt.value
        if kw == "in":
            self.expect("op", "(", "'(' after 'in'")
            items = [self.expr(BP_PREDICATE)]
            while self.at("op", ","):
                self.next()
                items.append(self.expr(BP_PREDICATE))
            self.expect("op", ")", "',' or ')'")
            return InList(tok.pos, left, tuple(items), negated)
        if kw == "between":
            low = self.expr(BP_PREDICATE)
            self.expect("keyword", "and", "'and' in 'between … and …'")
            high = self.expr(BP_PREDICATE)
            return Between(tok.pos, left, low, high, negated)
        if kw in TEXT_MATCHES:
            return TextMatch(tok.pos, kw, left, self.expr(BP_PREDICATE), negated)
        if kw == "is":
            negated = False
            if self.at("keyword", "not"):
                self.next()
                negated = True
            self.expect("keyword", "null", "'null' after 'is'")
            return IsNull(tok.pos, left, negated)
        raise error_at(f"unexpected {tok.describe()}", tok.pos)  # pragma: no cover


# The precedence levels whose operators form flat chains, and the operators of each.
CHAIN_OPS: dict[int, tuple[str, ...]] = {
    BP_OR: ("or",),
    BP_AND: ("and",),
    BP_SUM: ("+", "-"),
    BP_PRODUCT: ("*", "/"),
}
# Chains of at most this many operands keep the left-deep tree they always had (so every rule
# that compiled before compiles to exactly the same expression and SQL); longer chains, which
# used to exhaust the compiler's recursion, become balanced trees of such left-deep pieces.
LEFT_DEEP_CHAIN = 16
# The syntax tree's depth limit (checked after balancing; the compiler and Ibis recurse once
# per level, so an unbounded tree would end in RecursionError instead of a clear message).
MAX_TREE_DEPTH = 120


def build_chain(first: Node, links: list[tuple[str, Pos, Node]]) -> Node:
    """The tree of ``first op1 n1 op2 n2 …`` (one precedence level, left-associative).

    Up to :data:`LEFT_DEEP_CHAIN` operands the tree is left-deep, exactly as a left-associative
    parser builds it.  A longer chain is balanced, its depth growing with the logarithm of its
    length:

    * ``and`` / ``or``: regrouped (three-valued logic is associative, so this is exact);
    * ``+`` / ``-``: a balanced sum of signed operands, ``a - b`` becoming ``a + (-b)`` (exact in
      IEEE arithmetic; regrouping a sum of non-integer floats may change the last bits);
    * ``*`` / ``/``: ``a * b / c / d`` becomes ``(a * b) / (c * d)``, each product balanced
      (a zero divisor still gives null; rounding may differ in the last bits).

    The operator between two groups keeps its own position, so messages point at real text.
    """
    if len(links) < LEFT_DEEP_CHAIN:
        node = first
        for op, pos, right in links:
            node = Binary(pos, op, node, right)
        return node
    ops = {op for op, _, _ in links}
    if ops <= {"and"} or ops <= {"or"} or ops <= {"+"} or ops <= {"*"}:
        return _balanced(links[0][0], first, [(pos, right) for _, pos, right in links])
    if ops <= {"+", "-"}:
        signed = [(pos, Unary(pos, "neg", right) if op == "-" else right) for op, pos, right in links]
        return _balanced("+", first, signed)
    numerators = [(pos, right) for op, pos, right in links if op == "*"]
    denominators = [(pos, right) for op, pos, right in links if op == "/"]
    top = _balanced("*", first, numerators)
    div_pos, den_first = denominators[0]
    return Binary(div_pos, "/", top, _balanced("*", den_first, denominators[1:]))


def _balanced(op: str, first: Node, rest: list[tuple[Pos, Node]]) -> Node:
    """``first op rest[0] op rest[1] …`` as a balanced tree of left-deep pieces."""
    if len(rest) < LEFT_DEEP_CHAIN:
        node = first
        for pos, right in rest:
            node = Binary(pos, op, node, right)
        return node
    half = (len(rest) + 1) // 2  # operands first, rest[:half-1] | rest[half-1] starts the right part
    left = _balanced(op, first, rest[: half - 1])
    mid_pos, mid_first = rest[half - 1]
    return Binary(mid_pos, op, left, _balanced(op, mid_first, rest[half:]))


def tree_depth(node: Node) -> int:
    """The depth of the tree (a leaf is 1), computed without recursion."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        cur, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in _children(cur))
    return deepest


def _is_predicate(node: Node) -> bool:
    if isinstance(node, Binary):
        return node.op in COMPARISONS.values()
    return isinstance(node, InList | Between | TextMatch | IsNull)


def parse(text: str) -> Node:
    """Parse rule text into a syntax tree; raises :class:`RuleError` with line and column."""
    if not isinstance(text, str):
        raise RuleError("a rule must be text")
    if len(text) > MAX_RULE_LENGTH:
        raise RuleError(f"rule is too long ({len(text)} characters; at most {MAX_RULE_LENGTH})")
    tree = _Parser(text).parse_rule()
    if tree_depth(tree) > MAX_TREE_DEPTH:
        raise RuleError(
            f"rule is nested too deeply (its syntax tree has more than {MAX_TREE_DEPTH} levels); "
            "use fewer parentheses or split it into segments combined with in_segment()"
        )
    return tree


def walk(node: Node) -> list[Node]:
    """Every node of the tree, parents before children."""
    out: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        cur = stack.pop()
        out.append(cur)
        stack.extend(reversed(_children(cur)))
    return out


def _children(cur: Node) -> list[Node]:
    if isinstance(cur, Call):
        return [*cur.args, *(k.value for k in cur.kwargs)]
    if isinstance(cur, Unary):
        return [cur.operand]
    if isinstance(cur, Binary):
        return [cur.left, cur.right]
    if isinstance(cur, InList):
        return [cur.operand, *cur.items]
    if isinstance(cur, Between):
        return [cur.operand, cur.low, cur.high]
    if isinstance(cur, TextMatch):
        return [cur.operand, cur.pattern]
    if isinstance(cur, IsNull):
        return [cur.operand]
    return []


__all__ = [
    "Between",
    "Binary",
    "Call",
    "FieldRef",
    "InList",
    "IsNull",
    "KwArg",
    "Literal",
    "Node",
    "Pos",
    "TextMatch",
    "Token",
    "Unary",
    "error_at",
    "parse",
    "tokenize",
    "walk",
]
