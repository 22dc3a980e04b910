"""The sandbox templates run in, with a per-render budget of operations, time and output size.

Jinja2's ``ImmutableSandboxedEnvironment`` stops a template from reaching Python internals but
not from running for minutes or allocating gigabytes (nested ``range`` loops, ``'x'|center(10**9)``,
``9**64**64``, a string doubled in a loop).  Every render therefore runs under a
:class:`RenderBudget` taken from ``[render]`` in ``micromarketing.toml``:

* **operations**: every attribute lookup, item lookup, call, filter, intercepted operator and loop
  iteration costs one; the compiled code reaches loops through a guard inserted into the
  template's syntax tree (``{% for %}`` iterables are wrapped), so no loop escapes the count;
* **time**: the same checkpoints compare against a deadline per message;
* **output size** per part, checked while the output streams and on every value a filter, call or
  operator builds — values that could only be built by allocating too much (repeat counts, pad
  widths, format widths, big exponents) are refused *before* Python allocates them, so memory per
  render is bounded by a small multiple of the output limit.  (A process-wide ``RLIMIT_AS`` would
  also cap DuckDB and the other threads of a delivery worker, so the bound is enforced here, per
  render, instead.)

Violations raise :class:`RenderLimitError` naming the limit and its setting; the render loop adds
the template and part.  :func:`static_problems` refuses at ``template add`` what is already
certain to break a limit (constant ranges, widths, repeats and exponents beyond the bounds).
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from micromarketing.config import RenderSettings

MAX_INT_BITS = 256  # integers a template computes stay below 2**256
_GUARD_ITER = "_mm_counted"
_GUARD_SIZE = "_mm_sized"
_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z]")
_BRACE_WIDTH = re.compile(r"(\d+)")


class RenderLimitError(SecurityError):
    """A render went past one of the ``[render]`` limits (operations, seconds, output size)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(f"{message} ([render] {setting})")
        self.setting = setting


@dataclass
class RenderBudget:
    """What one message may still spend; created per render from :class:`RenderSettings`."""

    operations_left: int
    deadline: float
    max_output: int
    settings: RenderSettings

    @classmethod
    def start(cls, settings: RenderSettings) -> RenderBudget:
        return cls(
            settings.max_operations,
            time.monotonic() + settings.max_seconds,
            settings.max_output_chars,
            settings,
        )

    def spend(self, n: int = 1) -> None:
        """Charge ``n`` operations; raise when the operations or the time are used up."""
        self.operations_left -= n
        if self.operations_left < 0:
            raise RenderLimitError(
                f"more than {self.settings.max_operations:,} operations in one message", "max_operations"
            )
        if time.monotonic() > self.deadline:
            raise RenderLimitError(
                f"rendering took longer than {self.settings.max_seconds:g} s for one message", "max_seconds"
            )

    def check_size(self, value: Any) -> Any:
        """``value`` itself when its length fits the output limit, else raise."""
        if isinstance(value, str | list | tuple | dict) and len(value) > self.max_output:
            raise RenderLimitError(
                f"a value of {len(value):,} items is longer than the output limit of "
                f"{self.max_output:,} characters",
                "max_output_chars",
            )
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"an integer larger than 2**{MAX_INT_BITS}", "max_output_chars")
        return value

    def check_count(self, n: Any, what: str) -> None:
        """Refuse an integer argument (a width, count or repeat) beyond the output limit."""
        if isinstance(n, int) and not isinstance(n, bool) and abs(n) > self.max_output:
            raise RenderLimitError(
                f"{what} {n:,} is beyond the output limit of {self.max_output:,} characters",
                "max_output_chars",
            )


_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("render_budget", default=None)


@contextmanager
def budget(settings: RenderSettings) -> Iterator[RenderBudget]:
    """Run the enclosed render(s) of one message under a fresh budget."""
    b = RenderBudget.start(settings)
    token = _BUDGET.set(b)
    try:
        yield b
    finally:
        _BUDGET.reset(token)


def _current() -> RenderBudget:
    b = _BUDGET.get()
    # Outside any budget (only Template.generate/stream: LimitedTemplate.render opens one), each
    # check gets a fresh default budget: sizes are still bounded, counts and time are not.
    return b if b is not None else RenderBudget.start(RenderSettings())


class LimitedTemplate(jinja2.Template):
    """A template whose ``render`` runs under the environment's budget unless one is open."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        if _BUDGET.get() is not None:
            return super().render(*args, **kwargs)
        with budget(getattr(self.environment, "render_limits", RenderSettings())):
            return super().render(*args, **kwargs)


def stream(chunks: Iterator[str], b: RenderBudget) -> str:
    """Join a part's output chunks, refusing as soon as the part exceeds the output limit."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > b.max_output:
            raise RenderLimitError(
                f"the part's output is longer than {b.max_output:,} characters", "max_output_chars"
            )
        out.append(chunk)
    return "".join(out)


def _check_format_widths(fmt: str, b: RenderBudget) -> None:
    """Refuse ``str.format``/``%`` format strings whose widths or precisions exceed the limit."""
    for m in _PERCENT_WIDTH.finditer(fmt):
        for group in m.groups():
            if group == "*":
                raise RenderLimitError("a '*' width in a format string", "max_output_chars")
            if group:
                b.check_count(int(group), "format width")
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself reports the malformed format
    for _literal, _field, spec, _conv in parsed:
        for number in _BRACE_WIDTH.findall(spec or ""):
            b.check_count(int(number), "format width")


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: one operation, integer arguments bounded, the result's size checked."""

    @functools.wraps(fn)  # keeps jinja_pass_arg (pass_context & co.)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = _current()
        b.spend()
        for value in (*args[1:], *kwargs.values()):
            b.check_count(value, f"argument of filter {name!r}:")
        if name == "format" and args and isinstance(args[0], str):
            _check_format_widths(args[0], b)
        return b.check_size(fn(*args, **kwargs))

    return guarded


def _counted(value: Any) -> Iterator[Any]:
    """The iterable of a ``{% for %}`` loop, charging one operation per item."""
    b = _current()
    for item in value:
        b.spend()
        yield item


def _sized(value: Any) -> Any:
    """A string concatenation's (``~``) result, refused beyond the output limit."""
    b = _current()
    b.spend()
    return b.check_size(value)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every operation counted against the current :class:`RenderBudget`."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})
    max_exponent = 64

    template_class = LimitedTemplate

    def __init__(self, render_limits: RenderSettings | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.render_limits = render_limits or RenderSettings()
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters[_GUARD_ITER] = _counted
        self.filters[_GUARD_SIZE] = _sized

    # The syntax tree is rewritten once per template: loop iterables and concatenations pass
    # through the guard filters above, so compiled code cannot loop or grow a string uncounted.
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _GUARD_ITER, [], [], None, None, lineno=loop.lineno)
        for concat in list(tree.find_all(nodes.Concat)):
            _replace_node(tree, concat, _sized_node)
        return tree

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        b = _current()
        b.spend()
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > self.max_exponent:
                raise SecurityError(f"exponent {right} is larger than {self.max_exponent}")
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(1, abs(left).bit_length()) * right > MAX_INT_BITS:
                    raise RenderLimitError(
                        f"a power of a {abs(left).bit_length()}-bit integer to {right} is larger than "
                        f"2**{MAX_INT_BITS}",
                        "max_output_chars",
                    )
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > b.max_output:
                        raise RenderLimitError(
                            f"repetition would build {len(seq) * times:,} items, more than the output "
                            f"limit of {b.max_output:,}",
                            "max_output_chars",
                        )
            if isinstance(left, int) and isinstance(right, int):
                if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS + 1:
                    raise RenderLimitError(f"a product larger than 2**{MAX_INT_BITS}", "max_output_chars")
            return operator.mul(left, right)
        if operator_ == "%" and isinstance(left, str):
            _check_format_widths(left, b)
        return b.check_size(self.binop_table[operator_](left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _current().spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _current().spend()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        b = _current()
        b.spend()
        for value in (*args, *kwargs.values()):
            b.check_count(value, "call argument")
        return b.check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            b = _current()
            _check_format_widths(fmt, b)
            return b.check_size(wrapped(*args, **kwargs))

        return checked


def _sized_node(node: nodes.Node) -> nodes.Node:
    return nodes.Filter(node, _GUARD_SIZE, [], [], None, None, lineno=node.lineno)


def _replace_node(tree: nodes.Node, target: nodes.Node, make: Callable[[nodes.Node], nodes.Node]) -> None:
    """Replace ``target`` inside ``tree`` by ``make(target)`` (Jinja nodes have no parent links)."""
    for parent in tree.find_all(nodes.Node):
        for field in parent.fields:
            value = getattr(parent, field, None)
            if value is target:
                setattr(parent, field, make(target))
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is target:
                        value[i] = make(target)
                        return


def _const_int(node: nodes.Node) -> int | None:
    """The value of a constant integer expression built from literals, ``*`` and ``**``, without
    evaluating anything that could itself be huge (``None`` when not constant)."""
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, nodes.Neg):
        inner = _const_int(node.node)
        return -inner if inner is not None else None
    if isinstance(node, nodes.Pow | nodes.Mul):
        left, right = _const_int(node.left), _const_int(node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.Pow):
            if right < 0 or right > 64 or max(1, abs(left).bit_length()) * right > MAX_INT_BITS:
                return 2**MAX_INT_BITS  # stands for "too big": refused by the callers' bounds
            return left**right
        return left * right
    return None


def static_problems(tree: nodes.Template, settings: RenderSettings) -> list[str]:
    """What in a parsed template is certain to break a limit whatever the data (``template add``).

    Constant ``range`` sizes, ``*`` repeats, ``**`` exponents and integer arguments of filters and
    calls are evaluated (safely) and compared with the output limit; each problem names its line."""
    limit = settings.max_output_chars
    problems: list[str] = []
    for node in tree.find_all(nodes.Pow):
        value = _const_int(node.right)
        if value is not None and abs(value) > LimitedSandbox.max_exponent:
            problems.append(
                f"line {node.lineno}: exponent {value} is larger than {LimitedSandbox.max_exponent}"
            )
        elif _const_int(node) == 2**MAX_INT_BITS:
            problems.append(f"line {node.lineno}: a power larger than 2**{MAX_INT_BITS}")
    for node in tree.find_all(nodes.Mul):
        for seq, times in ((node.left, node.right), (node.right, node.left)):
            n = _const_int(times)
            if isinstance(seq, nodes.Const) and isinstance(seq.value, str) and n is not None:
                if len(seq.value) * n > limit:
                    size = len(seq.value) * n
                    problems.append(f"line {node.lineno}: repetition builds {size:,} characters")
    for node in tree.find_all((nodes.Call, nodes.Filter)):
        args = [*node.args, *(kw.value for kw in node.kwargs)]
        for arg in args:
            n = _const_int(arg)
            if n is not None and abs(n) > limit:
                what = f"filter {node.name!r}" if isinstance(node, nodes.Filter) else "a call"
                problems.append(
                    f"line {node.lineno}: {what} gets {n:,}, beyond the output limit of {limit:,}"
                )
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
            bounds = [_const_int(a) for a in node.args]
            if bounds and all(v is not None for v in bounds):
                size = len(range(*bounds))  # type: ignore[arg-type]
                if size > settings.max_operations:
                    problems.append(
                        f"line {node.lineno}: range of {size:,} items exceeds "
                        f"{settings.max_operations:,} operations"
                    )
    return problems


__all__ = [
    "LimitedSandbox",
    "RenderBudget",
    "RenderLimitError",
    "budget",
    "static_problems",
    "stream",
]


# ---------------------------------------------------------------------------------------------
# the environment: what a template can include, and how its parts are escaped
# ---------------------------------------------------------------------------------------------
DEFAULT_BLOCKS_DIR = Path(__file__).with_name("templates")
BLOCK_SUFFIXES = (".html", ".htm", ".txt")
BLOCK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.(html|htm|txt)$")


def autoescape(name: str | None) -> bool:
    return bool(name) and (name.endswith((".html", ".htm")) or name.endswith("#html"))  # type: ignore[union-attr]


class _Loader(jinja2.BaseLoader):
    """Serves message parts (``NAME#part``), workspace blocks, then the shipped default blocks."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = dict(sources)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template in self.sources:
            return self.sources[template], template, lambda: True
        if BLOCK_NAME.match(template) and (DEFAULT_BLOCKS_DIR / template).is_file():
            return (DEFAULT_BLOCKS_DIR / template).read_text(encoding="utf-8"), template, lambda: True
        raise jinja2.TemplateNotFound(template)


def make_environment(sources: Mapping[str, str] | None = None) -> jinja2.Environment:
    """The sandboxed environment templates run in (strict undefined, autoescape for HTML, every
    render under the ``[render]`` budget: see :mod:`micromarketing.personalize.sandbox`)."""
    env = LimitedSandbox(
        loader=_Loader(sources or {}),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=-1,
    )
    for name in ("lipsum", "cycler", "joiner"):  # less surface; nothing needs them
        env.globals.pop(name, None)
    return env


def default_blocks() -> dict[str, str]:
    """The shipped shared blocks by name (header.html, footer.html, product_card.html, …)."""
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(DEFAULT_BLOCKS_DIR.iterdir())
        if p.is_file() and p.suffix in BLOCK_SUFFIXES
    }
