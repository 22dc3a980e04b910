"""Message templates: storage, the Jinja2 sandbox, context building and fast batch rendering.

What it owns
------------
* Template versions in the operations store (:class:`~micromarketing.store.models.Template`): a
  *message template* (name without a dot) has up to four parts — ``subject``, ``html``, ``text``
  and ``sms`` — and a *shared block* (name with a file suffix, e.g. ``header.html``) has one
  ``source``.  Blocks shipped in ``personalize/templates/`` (header, footer, product card) are the
  defaults; a workspace block of the same name overrides them.  Parts pull blocks in with
  ``{% include "header.html" %}``, so many segment variants reuse the same modular assets.
* The sandbox: Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute
  starting with ``_``, no ``str.format`` escapes, no mutation of lists/dicts) with
  :class:`~jinja2.StrictUndefined`, autoescaping for HTML parts and blocks (by name), ``*`` and
  ``**`` guarded against memory/CPU bombs, and the subject stripped of line breaks (no header
  injection).  A missing field fails with its name unless the template gives a default
  (``{{ first_name | default('there') }}``); a NULL value counts as missing.
* The render context of one recipient: every non-null customer attribute and profile field at top
  level and as ``customer``; ``segment`` (name, description, persona: name, tagline, description,
  traits); ``offer`` (next best offer);
  ``recommendations`` (products); ``unsubscribe_url``; ``product_card(p)`` / ``product_card_text(p)``.

Why the renderer is hand-tuned
------------------------------
A plain loop calling ``Template.render`` for every part and re-rendering each product card for each
recipient spends most of its time on per-call overhead and on identical cards.  Here templates are
compiled once per run, product cards are rendered once per product (through the sandbox too) and
cached as ``Markup``, recipient data comes from the warehouse in Arrow batches, recommendations
and offers are fetched per batch only when the template reads them, and the hot loop calls the
compiled render functions directly (falling back to ``Template.render`` only to build a precise
error message with the template line).
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import new_context
from jinja2.sandbox import SecurityError
from markupsafe import Markup
from sqlalchemy import func, select

from micromarketing.config import RenderSettings
from micromarketing.errors import NotFoundError, TemplateError, TemplateLimitError, TemplateSecurityError
from micromarketing.personalize.results import TemplateInfo
from micromarketing.personalize.sandbox import (
    LimitedSandbox,
    RenderLimitError,
    budget,
    static_problems,
    stream,
)
from micromarketing.store.context import StoreContext
from micromarketing.store.models import Template
from micromarketing.store.versions import next_version
from micromarketing.tokens import server_secret, unsubscribe_url

PARTS = ("subject", "html", "text", "sms")
DEFAULT_BLOCKS_DIR = Path(__file__).with_name("templates")
EXAMPLES_DIR = DEFAULT_BLOCKS_DIR / "examples"
EXAMPLE_TEMPLATE = "seasonal_picks"
BLOCK_SUFFIXES = (".html", ".htm", ".txt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_BLOCK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.(html|htm|txt)$")
# Variables the renderer provides itself; anything else a template reads comes from the data.
CONTEXT_VARIABLES = (
    "customer",
    "segment",
    "offer",
    "recommendations",
    "unsubscribe_url",
    "product_card",
    "product_card_text",
    "product_cards",
    "product_cards_text",
)
# With errors="collect", this many members hitting a render limit stop the loop (the template is at
# fault, not the data): a runaway template must not cost max_seconds once per member.
LIMIT_FAILURES_BEFORE_STOP = 3
_INCLUDE = re.compile(r"""\{%\s*include\s+(["'])([^"']+)\1\s*(?:with\s+context\s*)?%\}""")
_NOT_INLINABLE = re.compile(r"\{%-?\s*(set|block|extends|import|from|macro|include)\b")


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One recipient's rendered message; parts the template lacks are ``None``."""

    customer_id: str
    subject: str | None
    html: str | None
    text: str | None
    sms: str | None


class Product:
    """A product as templates see it (one shared instance per product, so cards can be cached)."""

    __slots__ = ("product_id", "name", "category", "price", "currency", "repeatable")

    def __init__(
        self,
        product_id: str,
        name: str | None,
        category: str | None,
        price: float | None,
        currency: str | None,
        repeatable: bool | None = True,
    ) -> None:
        self.product_id = product_id
        self.name = name if name is not None else product_id
        self.category = category
        self.price = float(price) if price is not None else 0.0
        self.currency = currency
        self.repeatable = repeatable

    def __repr__(self) -> str:
        return f"Product({self.product_id!r})"


# ---------------------------------------------------------------------------------------------
# the sandbox
# ---------------------------------------------------------------------------------------------
def _autoescape(name: str | None) -> bool:
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
        if _BLOCK_NAME.match(template) and (DEFAULT_BLOCKS_DIR / template).is_file():
            return (DEFAULT_BLOCKS_DIR / template).read_text(encoding="utf-8"), template, lambda: True
        raise jinja2.TemplateNotFound(template)


def make_environment(sources: Mapping[str, str] | None = None) -> jinja2.Environment:
    """The sandboxed environment templates run in (strict undefined, autoescape for HTML, every
    render under the ``[render]`` budget: see :mod:`micromarketing.personalize.sandbox`)."""
    env = LimitedSandbox(
        loader=_Loader(sources or {}),
        autoescape=_autoescape,
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


# ---------------------------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------------------------
def part_for_file(path: str | os.PathLike[str]) -> str:
    """Which message part a file holds, from its name: ``*.subject``, ``*.html``, ``*.sms``, ``*.txt``.

    ``subject.txt`` and ``sms.txt`` are recognised by their stem as well.
    """
    p = Path(path)
    stem, suffix = p.stem.lower(), p.suffix.lower()
    if suffix == ".subject" or stem == "subject":
        return "subject"
    if suffix == ".sms" or stem == "sms":
        return "sms"
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in (".txt", ".text"):
        return "text"
    raise TemplateError(
        f"{p}: cannot tell which part this file is (name it *.subject, *.html, *.txt or *.sms)"
    )


def add_template(
    ctx: StoreContext, name: str, parts: Mapping[str, str] | Iterable[str | os.PathLike[str]]
) -> TemplateInfo:
    """Store a new version of message template ``name`` from part texts or files; returns it.

    ``parts`` maps part names (subject, html, text, sms) to Jinja source, or lists files whose
    names say the part (see :func:`part_for_file`).  Every part is compiled in the sandbox and
    every included block must exist, so a broken template is refused with its file and line.
    """
    if not _NAME.match(name):
        raise TemplateError(f"invalid template name {name!r}: use letters, digits, '_' or '-'")
    texts = _read_parts(parts)
    unknown = sorted(set(texts) - set(PARTS))
    if unknown:
        raise TemplateError(f"unknown template part(s) {', '.join(unknown)} (use {', '.join(PARTS)})")
    if not texts:
        raise TemplateError(f"template {name!r} has no parts")
    blocks = _stored_blocks(ctx)
    env = make_environment({**{f"{name}#{p}": s for p, s in texts.items()}, **blocks})
    variables: set[str] = set()
    for part, source in texts.items():
        variables |= _check_source(env, f"{name}#{part}", source, name, part, ctx.settings.render)
    return _store(ctx, name, "message", texts, sorted(variables))


def add_block(
    ctx: StoreContext, path_or_name: str | os.PathLike[str], source: str | None = None
) -> TemplateInfo:
    """Store a new version of a shared block (``header.html``, ``product_card.html``, …).

    Called with a file path, the block is named after the file; with a name and ``source``, the
    text is stored directly.  The block is compiled in the sandbox first.
    """
    name = Path(path_or_name).name
    if source is None:
        source = _read_text(Path(path_or_name))
    if not _BLOCK_NAME.match(name):
        raise TemplateError(f"invalid block name {name!r}: use NAME.html or NAME.txt")
    env = make_environment({name: source, **_stored_blocks(ctx)})
    variables = _check_source(env, name, source, name, "", ctx.settings.render)
    return _store(ctx, name, "block", {"source": source}, sorted(variables))


def install_examples(ctx: StoreContext) -> TemplateInfo:
    """Store the shipped example campaign template (``seasonal_picks``) in the workspace."""
    files = sorted(p for p in EXAMPLES_DIR.iterdir() if p.stem == EXAMPLE_TEMPLATE)
    return add_template(ctx, EXAMPLE_TEMPLATE, files)


def get_template(ctx: StoreContext, name: str, version: int | None = None) -> TemplateInfo:
    """The stored template (or block) ``name`` at ``version`` (default: latest)."""
    with ctx.ops.session() as s:
        q = select(Template).where(Template.name == name)
        q = q.where(Template.version == version) if version else q.order_by(Template.version.desc())
        row = s.scalars(q.limit(1)).first()
        if row is None:
            known = sorted(set(s.scalars(select(Template.name))))
            hint = f" (known: {', '.join(known[:20])})" if known else " (none stored yet: `template add`)"
            raise NotFoundError(
                f"no template named {name!r}" + (f" version {version}" if version else "") + hint
            )
        return _info(row)


def list_templates(ctx: StoreContext) -> list[TemplateInfo]:
    """Latest version of every stored template and block, by name."""
    with ctx.ops.session() as s:
        latest = (
            select(Template.name, func.max(Template.version).label("v")).group_by(Template.name).subquery()
        )
        rows = s.scalars(
            select(Template)
            .join(latest, (Template.name == latest.c.name) & (Template.version == latest.c.v))
            .order_by(Template.name)
        )
        return [_info(row) for row in rows]


def _info(row: Template) -> TemplateInfo:
    """A stored row as its model: the kind and variables are kept beside the parts."""
    parts = dict(row.parts or {})
    kind = str(parts.pop("_kind", "message"))
    variables = list(parts.pop("_variables", []))
    return TemplateInfo(name=row.name, version=row.version, kind=kind, parts=parts, variables=variables)


def _store(
    ctx: StoreContext, name: str, kind: str, parts: dict[str, str], variables: list[str]
) -> TemplateInfo:
    with ctx.ops.session() as s:
        version = next_version(s, "template", name)
        s.add(Template(name=name, version=version, parts={**parts, "_kind": kind, "_variables": variables}))
    ctx.audit("template.add", name, {"version": version, "kind": kind})
    return TemplateInfo(name=name, version=version, kind=kind, parts=parts, variables=variables)


def _stored_blocks(ctx: StoreContext) -> dict[str, str]:
    return {i.name: i.parts["source"] for i in list_templates(ctx) if i.kind == "block"}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_parts(parts: Mapping[str, str] | Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    if isinstance(parts, Mapping):
        return {str(k): str(v) for k, v in parts.items()}
    texts: dict[str, str] = {}
    for f in parts:
        part = part_for_file(f)
        if part in texts:
            raise TemplateError(f"{f}: a second file for part {part!r}")
        texts[part] = _read_text(Path(f))
    return texts


def _check_source(
    env: jinja2.Environment, key: str, source: str, name: str, part: str, limits: RenderSettings
) -> set[str]:
    """Compile ``source``, check its includes exist and that nothing in it is certain to break a
    render limit; returns the variables it reads."""
    try:
        ast = env.parse(source, name=key)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error: {exc.message}", template=name, part=part, line=exc.lineno
        ) from None
    problems = static_problems(ast, limits)
    if problems:
        raise TemplateError("exceeds the render limits: " + "; ".join(problems), template=name, part=part)
    for included in meta.find_referenced_templates(ast):
        if included is None:
            continue
        try:
            env.get_template(included)
        except jinja2.TemplateNotFound:
            known = ", ".join(sorted(set(default_blocks()) | {k for k in env.loader.sources if "#" not in k}))  # type: ignore[union-attr]
            raise TemplateError(
                f"includes unknown block {included!r} (known: {known})", template=name, part=part
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}", template=included, line=exc.lineno) from None
    return set(meta.find_undeclared_variables(ast))


# ---------------------------------------------------------------------------------------------
# compiled templates and the render loop
# ---------------------------------------------------------------------------------------------
class CompiledTemplate:
    """A message template compiled once in the sandbox, ready to render many recipients."""

    def __init__(
        self, info: TemplateInfo, blocks: Mapping[str, str], limits: RenderSettings | None = None
    ) -> None:
        self.info = info
        self.limits = limits or RenderSettings()
        self.name = info.name
        sources = {**blocks, **{f"{info.name}#{p}": s for p, s in info.parts.items()}}
        self.env = make_environment(sources)
        self._cards: dict[tuple[str, str], Any] = {}
        self.templates: dict[str, jinja2.Template] = {}
        for part in PARTS:
            if part in info.parts:
                try:
                    self.templates[part] = self.env.get_template(f"{info.name}#{part}")
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateError(
                        f"syntax error: {exc.message}", template=info.name, part=part, line=exc.lineno
                    ) from None
        self.reads = self._variables()
        # The fast path renders copies of the parts with constant includes inlined (no per-recipient
        # include context); errors are re-raised through the originals for exact file and line.
        inlined = {key: _inline_includes(src, sources, key) for key, src in sources.items() if "#" in key}
        self.fast_env = make_environment({**sources, **inlined})
        self.fast_env.globals.update(self._helpers())
        self.env.globals.update(self._helpers())
        self._globals = dict(self.fast_env.globals)
        self._fast = []
        for part in self.templates:
            t = self.fast_env.get_template(f"{info.name}#{part}")
            self._fast.append((part, t.root_render_func, t.name, t.blocks))

    def _helpers(self) -> dict[str, Any]:
        return {
            "product_card": self._card_html,
            "product_card_text": self._card_text,
            "product_cards": self._cards_html,
            "product_cards_text": self._cards_text,
        }

    # -- which data the template needs ----------------------------------------------------------
    def _variables(self) -> set[str]:
        """Names read by the parts and every block they reach (dynamic includes: assume all)."""
        seen: set[str] = set()
        names: set[str] = set()
        todo = [t.name for t in self.templates.values()]
        loader = self.env.loader
        while todo:
            key = todo.pop()
            if key in seen or key is None:
                continue
            seen.add(key)
            try:
                source = loader.get_source(self.env, key)[0]  # type: ignore[union-attr]
            except jinja2.TemplateNotFound:
                continue
            ast = self.env.parse(source)
            names |= meta.find_undeclared_variables(ast)
            for ref in meta.find_referenced_templates(ast):
                if ref is None:
                    names |= {"recommendations", "offer", "segment"}
                else:
                    todo.append(ref)
            if any(
                isinstance(n, nodes.Name) and n.name.startswith("product_card")
                for n in ast.find_all(nodes.Name)
            ):
                names.add("recommendations")
        return names

    def needs(self, variable: str) -> bool:
        """Whether any part (or block it includes) reads ``variable``."""
        return variable in self.reads

    # -- product cards, once per product ---------------------------------------------------------
    def _card(self, product: Any, block: str) -> Any:
        key = (getattr(product, "product_id", None) or str(product), block)
        card = self._cards.get(key)
        if card is None:
            try:
                tpl = self.env.get_template(block)
                card = tpl.render(product=product)
            except jinja2.TemplateNotFound:
                raise TemplateError(f"block {block!r} not found", template=self.name) from None
            card = Markup(card) if block.endswith((".html", ".htm")) else card
            self._cards[key] = card
        return card

    def _card_html(self, product: Any) -> Any:
        return self._card(product, "product_card.html")

    def _card_text(self, product: Any) -> Any:
        return self._card(product, "product_card.txt")

    def _cards_html(self, products: Iterable[Any]) -> Markup:
        cache, card = self._cards, self._card
        return Markup(
            "".join(
                [
                    cache.get((getattr(p, "product_id", None), "product_card.html"))
                    or card(p, "product_card.html")
                    for p in products
                ]
            )
        )

    def _cards_text(self, products: Iterable[Any]) -> str:
        cache, card = self._cards, self._card
        return "\n".join(
            [
                cache.get((getattr(p, "product_id", None), "product_card.txt")) or card(p, "product_card.txt")
                for p in products
            ]
        )

    # -- rendering ------------------------------------------------------------------------------
    def render(self, context: Mapping[str, Any], customer_id: str = "") -> RenderedMessage:
        """Render every part for one recipient's context (raises :class:`TemplateError`)."""
        env = self.fast_env
        data = {**self._globals, **context}
        out: dict[str, str | None] = {"subject": None, "html": None, "text": None, "sms": None}
        part = ""
        try:
            with budget(self.limits) as spent:
                for part, fn, name, blocks in self._fast:
                    ctx = new_context(env, name, blocks, data, True, None, None)
                    out[part] = stream(fn(ctx), spent)
        except RenderLimitError as exc:  # named here: re-rendering would spend the budget again
            raise TemplateLimitError(
                f"render limit: {exc}", template=self.name, part=part, customer_id=customer_id or None
            ) from None
        except RecursionError:
            raise TemplateLimitError(
                "render limit: recursion too deep (a macro calling itself?)",
                template=self.name,
                part=part,
                customer_id=customer_id or None,
            ) from None
        except Exception:  # redo through the public API for a precise, line-numbered error
            self._raise_precise(context, customer_id)
            raise
        subject = out["subject"]
        if subject is not None:
            out["subject"] = " ".join(subject.split())
        return RenderedMessage(customer_id, out["subject"], out["html"], out["text"], out["sms"])

    def _raise_precise(self, context: Mapping[str, Any], customer_id: str) -> None:
        with budget(self.limits):
            for part, tpl in self.templates.items():
                try:
                    tpl.render(**context)
                except Exception as exc:
                    raise _wrap(exc, self.name, part, customer_id) from None


def _inline_includes(source: str, sources: Mapping[str, str], key: str = "") -> str:
    """``source`` with each constant ``{% include "block" %}`` replaced by the block's text.

    Only blocks without statements that would change meaning when pasted (set, block, extends,
    import, macro, nested include) and with the same autoescaping as ``key`` (the including
    template's name) are inlined; the rest stay includes.
    """

    def paste(m: re.Match[str]) -> str:
        name = m.group(2)
        block = sources.get(name)
        if block is None and _BLOCK_NAME.match(name) and (DEFAULT_BLOCKS_DIR / name).is_file():
            block = (DEFAULT_BLOCKS_DIR / name).read_text(encoding="utf-8")
        if block is None or _NOT_INLINABLE.search(block) or _autoescape(name) != _autoescape(key):
            return m.group(0)
        return block[:-1] if block.endswith("\n") else block

    return _INCLUDE.sub(paste, source)


def _wrap(exc: BaseException, template: str, part: str, customer_id: str) -> TemplateError:
    """Turn a Jinja/Python error into a TemplateError naming the template file and line."""
    line = None
    where_part = part
    where_name = template
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        fname = frame.filename or ""
        if fname.startswith(f"{template}#") or _BLOCK_NAME.match(fname):
            line = frame.lineno
            if "#" in fname:
                where_name, where_part = fname.split("#", 1)
            else:
                where_name, where_part = fname, ""
            break
    if isinstance(exc, RenderLimitError):
        return TemplateLimitError(
            f"render limit: {exc}",
            template=where_name,
            part=where_part,
            line=line,
            customer_id=customer_id or None,
        )
    if isinstance(exc, SecurityError):
        return TemplateSecurityError(
            f"unsafe: {exc}", template=where_name, part=where_part, line=line, customer_id=customer_id or None
        )
    if isinstance(exc, jinja2.UndefinedError):
        msg = str(exc)
        return TemplateError(
            f"missing field: {msg} (give a default: {{{{ x | default('…') }}}})",
            template=where_name,
            part=where_part,
            line=line,
            customer_id=customer_id or None,
        )
    if isinstance(exc, TemplateError):
        return exc
    return TemplateError(
        f"{type(exc).__name__}: {exc}",
        template=where_name,
        part=where_part,
        line=line,
        customer_id=customer_id or None,
    )


def compile_template(ctx: StoreContext, name: str, version: int | None = None) -> CompiledTemplate:
    """Load template ``name`` (latest version unless given) with the workspace's blocks, compiled."""
    info = get_template(ctx, name, version)
    if info.kind != "message":
        raise TemplateError(f"{name!r} is a shared block, not a message template")
    return CompiledTemplate(info, _stored_blocks(ctx), ctx.settings.render)


# ---------------------------------------------------------------------------------------------
# recipient data
# ---------------------------------------------------------------------------------------------
def token_secret(ctx: StoreContext) -> bytes:
    """The workspace's secret for the opaque per-customer tokens of unsubscribe and preference
    links (``[server] secret_env``'s variable, else ``secrets/token.key`` created on first use)."""
    return server_secret(ctx.settings.server, ctx.root / "secrets" / "token.key")


def _segment_context(ctx: StoreContext, name: str) -> dict[str, Any]:
    """``segment`` for templates: name, kind, description and persona (name, tagline, description,
    traits as sentences) — a discovered segment's stored persona, else one made of its description."""
    from micromarketing.segments import Segments

    info = Segments(ctx).get(name)
    stored = dict(info.details or {}).get("persona")
    if isinstance(stored, dict):
        persona = {
            "name": stored.get("name") or info.description or info.name,
            "tagline": stored.get("tagline") or "",
            "description": stored.get("description") or "",
            "traits": [t.get("text", "") for t in stored.get("traits") or [] if isinstance(t, dict)],
        }
    else:
        persona = {
            "name": info.description or info.name,
            "tagline": "",
            "description": info.description,
            "traits": [],
        }
    return {"name": info.name, "kind": info.kind, "description": info.description, "persona": persona}


def _recipients_table(ctx: StoreContext, ids: ibis.Table) -> ibis.Table:
    """customers ⋈ profiles for the given ids (profile columns win only where customers lack them)."""
    customers = ctx.table("customers")
    base = ids.select(_cid=ids.customer_id.cast("string")).distinct()
    joined = base.join(customers, base._cid == customers.customer_id).drop("_cid")
    if ctx.warehouse.has_table("profiles"):
        profiles = ctx.table("profiles")
        extra = [c for c in profiles.columns if c not in joined.columns]
        prof = profiles.select(_pid=profiles.customer_id, **{c: profiles[c] for c in extra})
        joined = joined.left_join(prof, joined.customer_id == prof._pid).drop("_pid")
    return joined.order_by("customer_id")


def recipients_for(
    ctx: StoreContext, who: str | Sequence[str], as_of: Any = None
) -> tuple[ibis.Table, dict[str, Any] | None]:
    """The ``customer_id`` table for a segment name or a list of ids, plus the segment context."""
    if isinstance(who, str):
        from micromarketing.segments import Segments

        segment = _segment_context(ctx, who)
        return Segments(ctx).member_table(who, as_of=as_of), segment
    ids = [str(c) for c in who]
    return ibis.memtable({"customer_id": ids}, schema={"customer_id": "string"}), None


def render_for_customers(
    ctx: StoreContext,
    template_name: str,
    customers: str | Sequence[str],
    *,
    k: int = 5,
    version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    segment: str | None = None,
    batch_size: int = 10_000,
    errors: str = "raise",
    failures: list[TemplateError] | None = None,
    compiled: CompiledTemplate | None = None,
) -> Iterator[RenderedMessage]:
    """Render template ``template_name`` for a segment (name) or a list of customer ids, lazily.

    Recipient data is read from the warehouse as Arrow and rendered in batches of ``batch_size``;
    recommendations (``k`` per recipient) and the next best offer are computed per batch only when
    the template reads them.  ``extra`` adds constant variables (e.g. ``brand``); ``segment`` names
    the segment whose persona fills ``segment`` when rendering for a list of ids.  With ``errors="raise"`` the
    first failure raises :class:`TemplateError`; with ``errors="collect"`` failures are appended to
    ``failures`` and the recipient is skipped.  Customer ids not in the warehouse are skipped.
    """
    tpl = compiled or compile_template(ctx, template_name, version)
    ids_table, seg_ctx = recipients_for(ctx, customers)
    if segment is not None:
        seg_ctx = _segment_context(ctx, segment)
    yield from render_rows(
        ctx,
        tpl,
        _recipients_table(ctx, ids_table),
        k=k,
        extra=extra,
        segment=seg_ctx,
        batch_size=batch_size,
        errors=errors,
        failures=failures,
    )


def render_rows(
    ctx: StoreContext,
    tpl: CompiledTemplate,
    recipients: ibis.Table,
    *,
    k: int = 5,
    extra: Mapping[str, Any] | None = None,
    segment: Mapping[str, Any] | None = None,
    batch_size: int = 10_000,
    errors: str = "raise",
    failures: list[TemplateError] | None = None,
    recommender: Callable[[list[str]], Mapping[str, list[Product]]] | None = None,
) -> Iterator[RenderedMessage]:
    """Render ``tpl`` for every row of the ``recipients`` table (customers ⋈ profiles columns).

    ``recommender`` maps a batch of customer ids to their products (default: the fitted
    recommender through :func:`recommendations_by_customer`).
    """
    if errors not in ("raise", "collect"):
        raise ValueError("errors must be 'raise' or 'collect'")
    secret = token_secret(ctx)
    public_url = ctx.settings.server.public_url
    constant: dict[str, Any] = dict(extra or {})
    if segment is not None:
        constant["segment"] = dict(segment)
    want_recs = tpl.needs("recommendations")
    want_offer = tpl.needs("offer")
    limit_failures = 0
    catalogue = product_catalogue(ctx) if want_recs and recommender is None else {}
    # The recipients are read in one query as Arrow (columnar, compact) and converted to rows one
    # batch at a time.  Not a streaming reader: recommendations and offers run their own queries
    # between batches, and on DuckDB a new query on the connection ends a pending stream silently.
    table = recipients.to_pyarrow()
    for offset in range(0, table.num_rows, batch_size):
        rows = table.slice(offset, batch_size).to_pylist()
        if not rows:
            continue
        ids = [r["customer_id"] for r in rows]
        recs: Mapping[str, list[Product]] = {}
        offers: dict[str, dict[str, Any]] = {}
        if want_recs:
            recs = recommender(ids) if recommender else recommendations_by_customer(ctx, ids, k, catalogue)
        if want_offer:
            offers = offers_by_customer(ctx, ids)
        for row in rows:
            cid = row["customer_id"]
            values = {k_: v for k_, v in row.items() if v is not None}
            values["customer"] = dict(values)
            values.update(constant)
            values["unsubscribe_url"] = unsubscribe_url(public_url, secret, cid)
            if want_recs:
                values["recommendations"] = recs.get(cid, [])
            if cid in offers:
                values["offer"] = offers[cid]
            try:
                yield tpl.render(values, cid)
            except TemplateError as exc:
                if errors == "raise":
                    raise
                if isinstance(exc, TemplateLimitError):
                    limit_failures += 1
                    if limit_failures >= LIMIT_FAILURES_BEFORE_STOP:
                        raise  # the template itself runs away: do not spend the budget per member
                if failures is not None:
                    failures.append(exc)


def product_catalogue(ctx: StoreContext) -> dict[str, Product]:
    """Every product as a shared :class:`Product` instance, by id."""
    if not ctx.warehouse.has_table("products"):
        return {}
    rows = ctx.table("products").to_pyarrow().to_pylist()
    return {
        r["product_id"]: Product(
            r["product_id"],
            r.get("name"),
            r.get("category"),
            r.get("price"),
            r.get("currency"),
            r.get("repeatable"),
        )
        for r in rows
    }


def recommendations_by_customer(
    ctx: StoreContext, ids: Sequence[str], k: int, catalogue: Mapping[str, Product]
) -> dict[str, list[Product]]:
    """``k`` recommended products per customer (the fitted recommender; popularity if none)."""
    from micromarketing.personalize.recommend import recommend_for

    frame = recommend_for(ctx, ids, k)
    out: dict[str, list[Product]] = {}
    for cid, pid in zip(frame["customer_id"].tolist(), frame["product_id"].tolist(), strict=True):
        product = catalogue.get(pid)
        if product is not None:
            out.setdefault(cid, []).append(product)
    return out


def offers_by_customer(ctx: StoreContext, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The next best offer of each customer as a template variable (absent: no eligible offer)."""
    from micromarketing.personalize.offers import next_best_offer, offer_contexts

    frame = next_best_offer(ctx, ids)
    contexts = offer_contexts(ctx)
    return {
        cid: contexts[name]
        for cid, name in zip(frame["customer_id"], frame["offer"], strict=True)
        if name is not None and name in contexts
    }


# ---------------------------------------------------------------------------------------------
# preview and check
# ---------------------------------------------------------------------------------------------
def preview_template(
    ctx: StoreContext,
    name: str,
    customer_id: str,
    *,
    k: int = 5,
    version: int | None = None,
    segment: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RenderedMessage:
    """Render template ``name`` for one real customer; raises :class:`TemplateError` on failure."""
    for message in render_for_customers(
        ctx, name, [customer_id], k=k, version=version, segment=segment, extra=extra
    ):
        return message
    raise NotFoundError(f"customer {customer_id!r} not found")


@dataclass
class CheckReport:
    """What ``template check`` found: recipients, rendered, and each failure (customer, reason)."""

    template: str
    segment: str
    recipients: int
    rendered: int
    failures: list[dict[str, Any]]
    sms_over_160: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def failure_groups(self) -> list[dict[str, Any]]:
        """Failures grouped by part, line and reason, most frequent first, each with one example."""
        groups: dict[str, dict[str, Any]] = {}
        for f in self.failures:
            key = f"{f['part'] or '?'} line {f['line']}: {f['reason']}"
            group = groups.setdefault(key, {"reason": key, "count": 0, "example": f["customer_id"]})
            group["count"] += 1
        return sorted(groups.values(), key=lambda g: -g["count"])


def check_template(
    ctx: StoreContext,
    name: str,
    segment: str,
    *,
    k: int = 5,
    version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    max_failures: int = 1000,
) -> CheckReport:
    """Render ``name`` for every member of ``segment`` without sending; report every failure.

    Failures with the same reason are all listed (up to ``max_failures``) so that a field missing
    for some customers shows how many it affects.
    """
    failures: list[TemplateError] = []
    rendered = 0
    long_sms = 0
    try:
        for message in render_for_customers(
            ctx, name, segment, k=k, version=version, extra=extra, errors="collect", failures=failures
        ):
            rendered += 1
            if message.sms is not None and len(message.sms) > 160:
                long_sms += 1
    except TemplateLimitError as exc:
        raise TemplateLimitError(
            f"{exc.reason}; stopped after {LIMIT_FAILURES_BEFORE_STOP} members hit the limit "
            f"({rendered} rendered before)",
            template=exc.template,
            part=exc.part,
            customer_id=exc.customer_id,
        ) from None
    listed = [
        {"customer_id": f.customer_id, "part": f.part, "line": f.line, "reason": f.reason, "message": str(f)}
        for f in failures[:max_failures]
    ]
    return CheckReport(name, segment, rendered + len(failures), rendered, listed, long_sms)
