"""Row validation derived from a :class:`~micromarketing.store.schema.TableSpec`, as Ibis expressions.

Given a staged table of raw text columns (plus ``_row``), :func:`checked_table` returns one
expression that parses every column to its schema type, applies the column's checks, and names
the first failing field and its reason per row (``_field``/``_reason``, NULL when the row is
valid).  Everything runs vectorised in the warehouse; no Python per row.  The per-column rules:

* strings are trimmed of spaces (DuckDB's TRIM: Unicode space separators such as NBSP, not
  tabs or line breaks); an empty cell is "no value" (the column default applies, if any);
* a raw value longer than :data:`MAX_TEXT` characters is rejected;
* int: optional sign and digits only (DuckDB's own cast would round ``1.5``); float: decimal or
  scientific notation, finite; bool: DuckDB's spellings (true/false, t/f, yes/no, 1/0);
  date: ``YYYY-MM-DD``; timestamp: ISO 8601, without zone taken as UTC, with an offset
  converted to UTC;
* checks: email, phone (7-15 digits, optional leading +, spaces/dots/dashes/brackets allowed and
  removed), currency (upper-cased, must be in the workspace's list), non_negative, latitude,
  longitude, country (two letters, upper-cased), and ``allowed`` enumerations;
* an end (``Column.after``: the consent ledger's ``valid_until``) must be later than the column
  it ends, and is exempt from ``max_future`` below;
* plausible ranges (:class:`Limits`, from ``settings.ingest``): dates and timestamps not before
  ``min_date`` nor after the ingest time plus ``max_future``; amounts and prices (non-negative
  floats) not above ``max_amount`` -- so no stored value can overflow a later date or sum;
* the workspace currency (:class:`Limits.currency`): a row in another currency is rejected,
  unless ``fx`` holds a rate for it, in which case the amount is converted and the currency
  replaced by the workspace's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from micromarketing.store.schema import Column, TableSpec

MAX_TEXT = 1000

INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATE_RE = r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$"
TIMESTAMP_RE = (
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"  # date
    r"([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"  # optional time
    r"\s*(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?)?$"  # optional zone: none means UTC
)
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
PHONE_RE = r"^\+?[0-9]{7,15}$"
PHONE_SEPARATORS = r"[\s().\-]"
COUNTRY_RE = r"^[A-Za-z]{2}$"

_TYPE_REASONS = {
    "int": "not an integer",
    "float": "not a number",
    "bool": "not a boolean (true/false, yes/no, 1/0)",
    "date": "not a date (YYYY-MM-DD)",
    "timestamp": "not an ISO 8601 timestamp",
}
_IBIS_TYPES: dict[str, dt.DataType] = {
    "string": dt.string,
    "int": dt.int64,
    "float": dt.float64,
    "bool": dt.boolean,
    "date": dt.date,
    "timestamp": dt.Timestamp(timezone="UTC"),
}

_Rule = tuple[ir.BooleanValue, str | ir.StringValue]  # (broken when true, reason)


@dataclass(frozen=True)
class Limits:
    """Plausible ranges and the workspace currency that rows are checked against.

    ``max_at`` is the latest accepted timestamp (ingest time plus ``max_future``, the setting's
    text kept for the reason); ``currency`` is the workspace currency (None: not fixed yet, any
    listed currency passes) and ``fx`` maps other currencies to their rate into it.
    """

    min_date: date
    max_at: datetime
    max_future: str
    max_amount: float
    currency: str | None = None
    fx: Mapping[str, float] = field(default_factory=dict)


def checked_table(
    staged: ir.Table,
    spec: TableSpec,
    present: Sequence[str],
    currencies: Sequence[str],
    limits: Limits | None = None,
) -> ir.Table:
    """``_row``, every column of ``spec`` parsed to its type, and ``_field``/``_reason`` of the first failure.

    ``staged`` holds the raw text; ``present`` names the spec columns the file has (the others
    are taken as empty, so their default applies).  Derived columns (``h3_cell``) are added too.
    ``limits`` adds the plausible-range and workspace-currency rules; with an ``fx`` rate, the
    money column (``amount``/``price``) of a row in that currency is converted.
    """
    # Three layers of projection so that each cell is trimmed, parsed and checked once (a single
    # projection would repeat the parse inside every rule that uses it).
    texts = {}
    for col in spec.columns:
        raw = staged[col.name] if col.name in present else ibis.null(dt.string)
        text = _trim(raw).nullif("")
        if col.default is not None:
            text = text.coalesce(ibis.literal(col.default))
        texts[f"{col.name}__t"] = text
        texts[f"{col.name}__long"] = raw.length() > MAX_TEXT
    trimmed = staged.select("_row", **texts)
    parsed = trimmed.select(
        "_row",
        *[f"{c.name}__t" for c in spec.columns],
        *[f"{c.name}__long" for c in spec.columns],
        **{f"{c.name}__v": _parse(c, trimmed[f"{c.name}__t"]) for c in spec.columns},
    )
    reasons = {
        c.name: _reason(
            c, parsed[f"{c.name}__t"], parsed[f"{c.name}__v"], parsed[f"{c.name}__long"], currencies,
            limits, parsed[f"{c.after}__v"] if c.after else None,
        )
        for c in spec.columns
    }
    judged = parsed.select(
        "_row",
        **{c.name: parsed[f"{c.name}__v"] for c in spec.columns},
        **{f"{c.name}__r": reasons[c.name] for c in spec.columns},
    )
    names = [c.name for c in spec.columns]
    field = ibis.cases(*[(judged[f"{n}__r"].notnull(), ibis.literal(n)) for n in names], else_=None)
    reason = ibis.coalesce(*[judged[f"{n}__r"] for n in names])
    out = {
        "_row": judged["_row"],
        **{n: judged[n] for n in names},
        "_field": field.cast("string"),
        "_reason": reason.cast("string"),
    }
    if any(d.name == "h3_cell" for d in spec.derived):
        out["h3_cell"] = h3_cell_r7(judged["lat"], judged["lon"])
    if limits is not None and limits.currency and limits.fx and "currency" in names:
        out.update(_converted(spec, judged, limits.currency, limits.fx))
    return judged.select(**out)


def _money_columns(spec: TableSpec) -> list[str]:
    """The columns holding money (non-negative floats: ``amount``, ``price``)."""
    return [c.name for c in spec.columns if c.type == "float" and c.check == "non_negative"]


def _converted(
    spec: TableSpec, judged: ir.Table, currency: str, fx: Mapping[str, float]
) -> dict[str, ir.Value]:
    """Money columns multiplied by the ``fx`` rate of the row's currency, which becomes ``currency``."""
    rates = {code: rate for code, rate in fx.items() if code != currency}
    if not rates:
        return {}
    rate = judged.currency.substitute(rates, else_=1.0).cast("float64")
    out: dict[str, ir.Value] = {m: judged[m] * rate for m in _money_columns(spec)}
    out["currency"] = ibis.ifelse(judged.currency.isin(list(rates)), currency, judged.currency)
    return out


def _parse(col: Column, text: ir.StringValue) -> ir.Value:
    """The cell parsed to the column's type (NULL when it does not parse), normalised per check."""
    if col.type == "string":
        if col.check == "phone":
            return text.re_replace(PHONE_SEPARATORS, "")
        if col.check in ("currency", "country"):
            return text.upper()
        return text
    if col.type == "int":
        value: ir.Value = ibis.ifelse(text.re_search(INT_RE), text, None).try_cast(dt.int64)
    elif col.type == "float":
        parsed = ibis.ifelse(text.re_search(FLOAT_RE), text, None).try_cast(dt.float64)
        value = ibis.ifelse(parsed.isinf() | parsed.isnan(), None, parsed)
    elif col.type == "date":
        value = ibis.ifelse(text.re_search(DATE_RE), text, None).try_cast(dt.date)
    elif col.type == "timestamp":
        value = ibis.ifelse(text.re_search(TIMESTAMP_RE), text, None).try_cast(_IBIS_TYPES["timestamp"])
    else:  # bool
        value = text.try_cast(dt.boolean)
    return value.cast(_IBIS_TYPES[col.type])


def _reason(
    col: Column,
    text: ir.StringValue,
    value: ir.Value,
    too_long: ir.BooleanValue,
    currencies: Sequence[str],
    limits: Limits | None = None,
    start: ir.Value | None = None,
) -> ir.StringValue:
    """Why the cell is invalid (the first rule it breaks), NULL when it is fine (``start``: the
    parsed value of the column an end must come after)."""
    rules: list[_Rule] = [
        (too_long, f"longer than {MAX_TEXT} characters")
    ]
    if col.required:
        rules.append((text.isnull(), "required value missing"))
    if col.type != "string":
        rules.append((text.notnull() & value.isnull(), _TYPE_REASONS[col.type]))
    if col.check == "email":
        rules.append((~text.re_search(EMAIL_RE), "not an email address"))
    elif col.check == "phone":
        rules.append((~value.re_search(PHONE_RE), "not a phone number (7-15 digits, optional +)"))
    elif col.check == "currency":
        rules.append((~value.isin(list(currencies)), "currency not in settings.ingest.currencies"))
    elif col.check == "country":
        rules.append((~text.re_search(COUNTRY_RE), "not an ISO-3166 alpha-2 country code"))
    elif col.check == "non_negative":
        rules.append((value < 0, "negative value"))
    elif col.check == "latitude":
        rules.append(((value < -90) | (value > 90), "latitude outside [-90, 90]"))
    elif col.check == "longitude":
        rules.append(((value < -180) | (value > 180), "longitude outside [-180, 180]"))
    if col.allowed is not None:
        rules.append((~text.isin(list(col.allowed)), "not one of " + ", ".join(col.allowed)))
    if start is not None:
        rules.append((value <= start, f"not later than {col.after}"))
    if limits is not None:
        rules += _limit_rules(col, value, limits)
    # NULL cells pass the checks (a NULL comparison is not "true"); required is checked above.
    cases = [(cond.fill_null(False), ibis.literal(m) if isinstance(m, str) else m) for cond, m in rules]
    return ibis.cases(*cases, else_=None).cast("string")


def _limit_rules(col: Column, value: ir.Value, limits: Limits) -> list[_Rule]:
    """The plausible-range and workspace-currency rules of one column (reasons name the bound)."""
    rules: list[_Rule] = []
    floor = limits.min_date.isoformat()
    latest = limits.max_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    future = f"after {latest} (ingest time + settings.ingest.max_future {limits.max_future})"
    if col.type == "timestamp":
        start = datetime.combine(limits.min_date, time(), tzinfo=UTC)
        rules.append((value < ibis.literal(start, type=_IBIS_TYPES["timestamp"]),
                      f"before {floor} (settings.ingest.min_date)"))
        if col.after is None:  # an end may lie in the future
            rules.append((value > ibis.literal(limits.max_at, type=_IBIS_TYPES["timestamp"]), future))
    elif col.type == "date":
        rules.append((value < ibis.literal(limits.min_date, type=dt.date),
                      f"before {floor} (settings.ingest.min_date)"))
        rules.append((value > ibis.literal(limits.max_at.date(), type=dt.date), future))
    elif col.type == "float" and col.check == "non_negative":
        rules.append((value > limits.max_amount, f"above {limits.max_amount:g} (settings.ingest.max_amount)"))
    elif col.check == "currency" and limits.currency:
        accepted = sorted({limits.currency, *limits.fx})
        reason = ibis.literal("currency ").concat(
            value, f" is not the workspace currency {limits.currency}"
        )
        rules.append((~value.isin(accepted), reason))
    return rules


@ibis.udf.scalar.builtin(name="trim")
def _trim(text: str) -> str:  # type: ignore[empty-body]
    """DuckDB's one-argument TRIM (Unicode space separators).  Ibis' ``strip()`` passes a list of whitespace
    characters, which takes DuckDB a slower path (about 2x on the whole validation)."""


@ibis.udf.scalar.pyarrow
def h3_cell_r7(lat: dt.float64, lon: dt.float64) -> dt.string:
    """H3 cell (resolution 7) of each (lat, lon), NULL where either is NULL; computed per Arrow batch."""
    import h3

    lats, lons = lat.to_pylist(), lon.to_pylist()
    return pa.array(
        [
            None if (a is None or o is None) else h3.latlng_to_cell(a, o, 7)
            for a, o in zip(lats, lons, strict=True)
        ],
        type=pa.string(),
    )
