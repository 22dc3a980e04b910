"""Rendering: compiled templates, the render context of each recipient and the batch render loop.

The render context of one recipient: every non-null customer attribute and profile field at top
level and as ``customer``; ``segment`` (name, description, persona: name, tagline, description,
traits); ``offer`` (next best offer); ``recommendations`` (products); ``unsubscribe_url``;
``product_card(p)`` / ``product_card_text(p)``.

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

import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import new_context
from jinja2.sandbox import SecurityError
from markupsafe import Markup

from micromarketing.config import RenderSettings
from micromarketing.errors import TemplateError, TemplateLimitError, TemplateSecurityError
from micromarketing.personalize.results import TemplateInfo
from micromarketing.personalize.sandbox import (
    BLOCK_NAME,
    DEFAULT_BLOCKS_DIR,
    RenderLimitError,
    autoescape,
    budget,
    make_environment,
    stream,
)
from micromarketing.personalize.template_store import PARTS, get_template, stored_blocks
from micromarketing.store.context import StoreContext
from micromarketing.tokens import server_secret, unsubscribe_url

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
        if block is None and BLOCK_NAME.match(name) and (DEFAULT_BLOCKS_DIR / name).is_file():
            block = (DEFAULT_BLOCKS_DIR / name).read_text(encoding="utf-8")
        if block is None or _NOT_INLINABLE.search(block) or autoescape(name) != autoescape(key):
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
        if fname.startswith(f"{template}#") or BLOCK_NAME.match(fname):
            line = frame.lineno
            if "#" in fname:
                where_name, where_part = fname.split("#", 1)
            else:
                where_name, where_part = fname, ""
            break
    where = {"template": where_name, "part": where_part, "line": line, "customer_id": customer_id or None}
    if isinstance(exc, RenderLimitError):
        return TemplateLimitError(f"render limit: {exc}", **where)
    if isinstance(exc, SecurityError):
        return TemplateSecurityError(f"unsafe: {exc}", **where)
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateError(f"missing field: {exc} (give a default: {{{{ x | default('…') }}}})", **where)
    if isinstance(exc, TemplateError):
        return exc
    return TemplateError(f"{type(exc).__name__}: {exc}", **where)


def compile_template(ctx: StoreContext, name: str, version: int | None = None) -> CompiledTemplate:
    """Load template ``name`` (latest version unless given) with the workspace's blocks, compiled."""
    info = get_template(ctx, name, version)
    if info.kind != "message":
        raise TemplateError(f"{name!r} is a shared block, not a message template")
    return CompiledTemplate(info, stored_blocks(ctx), ctx.settings.render)


# ---------------------------------------------------------------------------------------------
# recipient data
# ---------------------------------------------------------------------------------------------
def token_secret(ctx: StoreContext) -> bytes:
    """The workspace's secret for the opaque per-customer tokens of unsubscribe and preference
    links (``[server] secret_env``'s variable, else ``secrets/token.key`` created on first use)."""
    return server_secret(ctx.settings.server, ctx.root / "secrets" / "token.key")


def segment_context(ctx: StoreContext, name: str) -> dict[str, Any]:
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


def recipients_table(ctx: StoreContext, ids: ibis.Table) -> ibis.Table:
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

        segment = segment_context(ctx, who)
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
        seg_ctx = segment_context(ctx, segment)
    yield from render_rows(
        ctx,
        tpl,
        recipients_table(ctx, ids_table),
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
