"""What an outbox row is made of, and how the delivery worker renders it again, identically.

An outbox row stores the message's *ingredients* in its JSON ``fields``, never the rendered body,
so a million rows stay small and every retry renders the same bytes:

* the person's values the template reads (top level, by column name; every value when the
  template reads ``customer``), plus the contact point of the channel (``email``, ``phone``);
* ``_segment``: the segment's template context (name, kind, description, persona) when the
  template reads ``segment``, else just its name;
* ``_offer``: the variant's offer as templates see it (name, kind, value, headline, dates, code);
* ``_products``: product ids of the recommendations (rebuilt from the catalogue at render time);
* ``_tz`` and ``_window_end``: what the send-time policy needs (time zone, end of send window).

Dates and timestamps are stored tagged (``{"$date": "2024-01-01"}``) and restored as the same
types, so a template that formats them renders the same text.  The keys starting with ``_`` are
reserved; customer columns never start with one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from micromarketing.campaigns.policy import CONTACT_FIELD, TOPIC_FIELD, TZ_FIELD, WINDOW_END_FIELD
from micromarketing.errors import TemplateError
from micromarketing.personalize.templates import (
    CompiledTemplate,
    Product,
    RenderedMessage,
    product_catalogue,
    token_secret,
)
from micromarketing.store.context import StoreContext
from micromarketing.store.models import OutboxMessage
from micromarketing.tokens import unsubscribe_url

SEGMENT_FIELD = "_segment"
OFFER_FIELD = "_offer"
PRODUCTS_FIELD = "_products"
RESERVED_PREFIX = "_"
_DATE, _DATETIME = "$date", "$datetime"


# ---------------------------------------------------------------------------------------------
# JSON values that come back as the same Python types
# ---------------------------------------------------------------------------------------------
_PLAIN = frozenset({str, int, float, bool, type(None)})


def encode_value(value: Any) -> Any:
    """A JSON-safe form of a warehouse value (dates and timestamps tagged, decimals as floats)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, dict):
        if len(value) == 1 and _DATETIME in value:
            return datetime.fromisoformat(value[_DATETIME])
        if len(value) == 1 and _DATE in value:
            return date.fromisoformat(value[_DATE])
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# freezing
# ---------------------------------------------------------------------------------------------
def person_keys(compiled: CompiledTemplate | None) -> frozenset[str] | None:
    """The row columns a template reads (None: every column, because it reads ``customer``)."""
    if compiled is None:
        return frozenset()
    if compiled.needs("customer"):
        return None
    return frozenset(compiled.reads)


class Freezer:
    """Freezes rows for one variant: the template's needs and the constant parts worked out once."""

    def __init__(
        self,
        compiled: CompiledTemplate | None,
        *,
        channel: str,
        segment: Mapping[str, Any],
        offer: Mapping[str, Any] | None = None,
        window_end: datetime | None = None,
        topic: str | None = None,
        contact: Sequence[str] = (),
    ) -> None:
        self.compiled = compiled
        keys = person_keys(compiled)
        # the channel's contact point always travels with the row (the worker sends to it)
        always = {*contact, *([CONTACT_FIELD[channel]] if channel in CONTACT_FIELD else [])}
        self.keys = None if keys is None else keys | always
        wants_segment = compiled is not None and compiled.needs("segment")
        self.wants_products = compiled is not None and compiled.needs("recommendations")
        constant: dict[str, Any] = {
            SEGMENT_FIELD: encode_value(dict(segment) if wants_segment else {"name": segment.get("name")})
        }
        if offer is not None:
            constant[OFFER_FIELD] = encode_value(dict(offer))
        if window_end is not None:
            constant[WINDOW_END_FIELD] = window_end.isoformat()
        if topic is not None:
            constant[TOPIC_FIELD] = topic  # the send-time policy checks the person still wants it
        self.constant = constant

    def fields(
        self, row: Mapping[str, Any], *, products: Sequence[str] = (), timezone: str | None = None
    ) -> dict[str, Any]:
        """The ``fields`` of one recipient's outbox row (``row``: customers ⋈ profiles columns)."""
        keys = self.keys
        plain = _PLAIN
        out: dict[str, Any] = {
            k: v if type(v) in plain else encode_value(v)
            for k, v in row.items()
            if v is not None and (keys is None or k in keys) and k[:1] != RESERVED_PREFIX
        }
        out.update(self.constant)
        if self.wants_products:
            out[PRODUCTS_FIELD] = [str(p) for p in products]
        if timezone:
            out[TZ_FIELD] = timezone
        return out


def freeze(
    row: Mapping[str, Any],
    compiled: CompiledTemplate | None,
    *,
    channel: str,
    segment: Mapping[str, Any],
    offer: Mapping[str, Any] | None = None,
    products: Sequence[str] = (),
    timezone: str | None = None,
    window_end: datetime | None = None,
    contact: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON ``fields`` of one outbox row (see the module docstring); for many rows of one
    variant build a :class:`Freezer` once."""
    freezer = Freezer(
        compiled, channel=channel, segment=segment, offer=offer, window_end=window_end, contact=contact
    )
    return freezer.fields(row, products=products, timezone=timezone)


def offer_context(offer: Any) -> dict[str, Any]:
    """What templates see as ``offer`` for a variant's offer (an ``OfferInfo``), with its code."""
    return {
        "name": offer.name,
        "code": offer.name,
        "kind": offer.kind,
        "value": offer.value,
        "headline": offer.headline,
        "valid_from": offer.valid_from,
        "valid_to": offer.valid_to,
    }


# ---------------------------------------------------------------------------------------------
# rendering from the frozen ingredients
# ---------------------------------------------------------------------------------------------
_catalogues: weakref.WeakKeyDictionary[CompiledTemplate, dict[str, Product]] = weakref.WeakKeyDictionary()


def _catalogue(ctx: StoreContext, compiled: CompiledTemplate) -> dict[str, Product]:
    """The product catalogue, read once per compiled template (the worker compiles once a run)."""
    found = _catalogues.get(compiled)
    if found is None:
        found = product_catalogue(ctx)
        _catalogues[compiled] = found
    return found


def context_from_fields(
    ctx: StoreContext,
    compiled: CompiledTemplate,
    customer_id: str,
    fields: Mapping[str, Any],
    *,
    secret: bytes | None = None,
) -> dict[str, Any]:
    """The render context of a frozen row, built the way ``render_rows`` builds it."""
    values = {k: decode_value(v) for k, v in fields.items() if not k.startswith(RESERVED_PREFIX)}
    values["customer"] = dict(values)
    values["segment"] = decode_value(fields.get(SEGMENT_FIELD) or {})
    secret = secret if secret is not None else token_secret(ctx)
    values["unsubscribe_url"] = unsubscribe_url(ctx.settings.server.public_url, secret, customer_id)
    if compiled.needs("recommendations"):
        catalogue = _catalogue(ctx, compiled)
        values["recommendations"] = [catalogue[p] for p in fields.get(PRODUCTS_FIELD) or () if p in catalogue]
    if fields.get(OFFER_FIELD) is not None:
        values["offer"] = decode_value(fields[OFFER_FIELD])
    return values


def render_frozen(
    ctx: StoreContext,
    compiled: CompiledTemplate | None,
    message: OutboxMessage,
    secret: bytes | None = None,
) -> RenderedMessage:
    """Render outbox ``message`` from its frozen ``fields`` with ``compiled`` (its template at the
    row's ``template_version``); the same bytes on every call.  ``secret``: the token secret, read
    once by a caller rendering many rows.  Raises :class:`TemplateError`."""
    if compiled is None:
        raise TemplateError("the outbox row names no template", customer_id=message.customer_id)
    values = context_from_fields(ctx, compiled, message.customer_id, message.fields or {}, secret=secret)
    return compiled.render(values, message.customer_id)


def render_context_rows(
    ctx: StoreContext, compiled: CompiledTemplate, rows: Iterable[tuple[str, Mapping[str, Any]]]
) -> Iterable[RenderedMessage]:
    """Render many frozen (customer id, fields) pairs (the run's sample check)."""
    secret = token_secret(ctx)
    for customer_id, fields in rows:
        yield compiled.render(
            context_from_fields(ctx, compiled, customer_id, fields, secret=secret), customer_id
        )
