"""Direct mail: a print-ready CSV and a Parquet file of name and postal address per recipient,
with the campaign, variant and offer code (the mail house merges the offer onto the piece).

Use :func:`write_direct_mail` on recipients directly, or :class:`DirectMailChannel` through the
Channel protocol (each message's ``metadata`` holds the address; ``close`` writes the files).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from micromarketing.channels.base import ChannelKind, DeliveryOutcome, Done, OutgoingMessage, send_each

COLUMNS = (
    "customer_id",
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
    "country",
    "campaign_id",
    "variant",
    "offer_code",
)
REQUIRED = ("last_name", "address_line1", "city", "postal_code", "country")
_SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])


class DirectMailRecipient(BaseModel):
    """One printed piece: the addressee and the offer."""

    customer_id: str
    first_name: str = ""
    last_name: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""
    campaign_id: str = ""
    variant: str = ""
    offer_code: str = ""

    def missing(self) -> list[str]:
        """The required address fields that are blank."""
        return [f for f in REQUIRED if not getattr(self, f).strip()]


class DirectMailExport(BaseModel):
    """What :func:`write_direct_mail` wrote."""

    csv_path: str
    parquet_path: str
    rows: int
    skipped: dict[str, str]  # customer_id → why (missing address fields)
    sha256: str  # of the CSV, for the ledger


def write_direct_mail(
    recipients: Iterable[DirectMailRecipient], csv_path: Path, parquet_path: Path
) -> DirectMailExport:
    """Write the recipients with a complete address (sorted by country, postal code, customer
    for the printer's postal presort) to a UTF-8 CSV and a Parquet file with the same columns."""
    rows, skipped = [], {}
    for r in recipients:
        missing = r.missing()
        if missing:
            skipped[r.customer_id] = "missing " + ", ".join(missing)
        else:
            rows.append({c: getattr(r, c).strip() for c in COLUMNS})
    rows.sort(key=lambda d: (d["country"], d["postal_code"], d["customer_id"]))
    csv_path, parquet_path = Path(csv_path), Path(parquet_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    parquet_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=_SCHEMA), parquet_path)
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    return DirectMailExport(
        csv_path=str(csv_path), parquet_path=str(parquet_path), rows=len(rows), skipped=skipped, sha256=digest
    )


class DirectMailChannel:
    """Collects messages (address in ``metadata``) and writes the files on :meth:`close`.

    A message without a complete address fails permanently (not a suppression)."""

    kind: ChannelKind = "direct_mail"

    def __init__(self, csv_path: Path, parquet_path: Path) -> None:
        self.csv_path, self.parquet_path = Path(csv_path), Path(parquet_path)
        self._recipients: list[DirectMailRecipient] = []
        self.export: DirectMailExport | None = None

    def send_batch(
        self, messages: Iterable[OutgoingMessage], done: Done | None = None
    ) -> list[DeliveryOutcome]:
        """Queue each message with a complete address; one outcome per message, in order (each to
        ``done``; "sent" means queued: the files are written by :meth:`close`)."""
        return send_each(messages, self._queue, done)

    def _queue(self, m: OutgoingMessage) -> DeliveryOutcome:
        fields = {c: str(m.metadata.get(c) or "") for c in COLUMNS[1:9]}
        r = DirectMailRecipient(
            customer_id=m.customer_id,
            campaign_id=m.campaign_id or "",
            variant=m.variant or "",
            offer_code=m.offer_code or "",
            **fields,
        )
        missing = r.missing()
        if missing:
            return DeliveryOutcome.permanent(m.message_id, "missing " + ", ".join(missing))
        self._recipients.append(r)
        return DeliveryOutcome.sent(m.message_id)

    def close(self) -> None:
        """Write the CSV and Parquet files of everything queued (once)."""
        if self.export is None:
            self.export = write_direct_mail(self._recipients, self.csv_path, self.parquet_path)
