"""Reading a mail provider's bounce/complaint export (``micromarketing suppress import FILE``).

Accepts CSV (any delimiter the sniffer recognises) or JSON lines with an address column named as
the common providers name it (``email``, ``email_address``, ``address``, ``recipient``…) and an
optional type/reason column.  Each row becomes a :class:`SuppressionEntry`; the store records
them in the suppression list.  Rows without a usable address are reported with their line number.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from micromarketing.errors import IngestError

Kind = Literal["hard_bounce", "complaint", "unsubscribe", "other"]
_ADDRESS = ("email", "email_address", "emailaddress", "address", "recipient", "recipient_email", "to")
_TYPE = ("type", "event", "bounce_type", "bouncetype", "category", "status", "suppression_type")
_REASON = ("reason", "description", "diagnostic_code", "error", "details", "status_message")


class SuppressionEntry(BaseModel):
    """One address to suppress and why."""

    email: str
    kind: Kind
    reason: str = ""
    line: int


class SuppressionImport(BaseModel):
    """What a provider export held: the entries and the lines that could not be used."""

    entries: list[SuppressionEntry]
    rejected: dict[int, str]  # line → why


def _kind(text: str) -> Kind:
    t = text.lower()
    if "complain" in t or "spam" in t or "abuse" in t:
        return "complaint"
    if "unsub" in t:
        return "unsubscribe"
    if "bounce" in t or "hard" in t or "permanent" in t or "invalid" in t or t.startswith("5"):
        return "hard_bounce"
    return "other" if t else "hard_bounce"


def _pick(row: dict[str, str], names: tuple[str, ...]) -> str:
    norm = {k.strip().lower().replace(" ", "_").replace("-", "_"): v for k, v in row.items() if k}
    for name in names:
        value = norm.get(name)
        if value:
            return str(value).strip()
    return ""


def parse_suppression_export(path: Path) -> SuppressionImport:
    """Parse a provider's bounce/complaint export at ``path`` (CSV or JSON lines)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: cannot read suppression export: {exc}") from exc
    if text.lstrip().startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((n, {str(k): str(v) for k, v in json.loads(line).items()}))
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise IngestError(f"{path}: line {n}: not a JSON object: {exc}") from exc
    else:
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        if not reader.fieldnames or not any(
            f.strip().lower().replace(" ", "_").replace("-", "_") in _ADDRESS for f in reader.fieldnames
        ):
            raise IngestError(f"{path}: no address column (expected one of: {', '.join(_ADDRESS)})")
        rows = [(n, row) for n, row in enumerate(reader, start=2)]
    entries, rejected = [], {}
    for n, row in rows:
        email = _pick(row, _ADDRESS).lower()
        if "@" not in email or " " in email:
            rejected[n] = f"no valid address ({email!r})"
            continue
        kind_text = _pick(row, _TYPE)
        entries.append(
            SuppressionEntry(
                email=email, kind=_kind(kind_text), reason=_pick(row, _REASON) or kind_text, line=n
            )
        )
    return SuppressionImport(entries=entries, rejected=rejected)
