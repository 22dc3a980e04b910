"""Ad audiences: customer lists for Google Customer Match and Meta Custom Audiences, normalised
and SHA-256 hashed as each platform documents — never raw PII in the file.

* Email: trim, lowercase; Google also drops the dots of the local part for gmail.com and
  googlemail.com.  Hashed (hex) for both.
* Phone: Google hashes E.164 *with* ``+``; Meta hashes digits with country code, *no* ``+``.
* Names: lowercase, punctuation removed, whitespace collapsed; hashed for both.
* Country / zip: Google sends them unhashed (ISO alpha-2, postal code as written); Meta hashes the
  lowercase country code and the zip (lowercase, no spaces or dashes; US: the first 5 digits).

Only contacts with ad consent are exported; the :class:`AudienceExport` result lists the exported
customer ids and the file's SHA-256 so the caller records the export in the consent ledger.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from micromarketing.channels.sms import to_e164

Platform = Literal["google", "meta"]

#: The CSV headers each platform documents for a customer list.
HEADERS: dict[str, tuple[str, ...]] = {
    "google": ("Email", "Phone", "First Name", "Last Name", "Country", "Zip"),
    "meta": ("email", "phone", "fn", "ln", "zip", "country"),
}
_GMAIL = {"gmail.com", "googlemail.com"}
_SPACES = re.compile(r"\s+")


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 ``value``."""
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_email(raw: str | None, platform: Platform) -> str | None:
    """The platform's normal form of an email address, or None when it is not one."""
    email = (raw or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or _SPACES.search(email):
        return None
    if platform == "google" and domain in _GMAIL:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def normalize_phone(
    raw: str | None, platform: Platform, default_country_code: str | None = None
) -> str | None:
    """Google: E.164 with ``+``; Meta: the same digits without ``+``; None when not a number."""
    e164 = to_e164(raw or "", default_country_code)
    if e164 is None:
        return None
    return e164 if platform == "google" else e164[1:]


def normalize_name(raw: str | None) -> str | None:
    """Lowercase, punctuation and symbols removed, whitespace collapsed; None when empty."""
    text = unicodedata.normalize("NFC", (raw or "").lower())
    text = "".join(c for c in text if not unicodedata.category(c).startswith(("P", "S")))
    text = _SPACES.sub(" ", text).strip()
    return text or None


def normalize_country(raw: str | None) -> str | None:
    """A two-letter ISO country code in lowercase, or None."""
    code = (raw or "").strip().lower()
    return code if len(code) == 2 and code.isalpha() and code.isascii() else None


def normalize_zip(raw: str | None, country: str | None, platform: Platform) -> str | None:
    """Google: the postal code trimmed; Meta: lowercase without spaces/dashes, US 5 digits."""
    text = (raw or "").strip()
    if platform == "meta":
        text = re.sub(r"[\s\-]", "", text.lower())
        if country == "us":
            text = text[:5]
    return text or None


class AudienceContact(BaseModel):
    """A customer's identifiers as stored (raw) and whether they consented to ad targeting."""

    customer_id: str
    ad_consent: bool = False
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    postal_code: str | None = None


class AudienceExport(BaseModel):
    """What :func:`write_audience` wrote, for the ledger."""

    platform: Platform
    path: str
    rows: int
    customer_ids: list[str]
    excluded_no_consent: int
    skipped_no_identifier: int
    sha256: str


def _h(value: str | None) -> str:
    return sha256_hex(value) if value else ""


def audience_row(
    contact: AudienceContact, platform: Platform, default_country_code: str | None = None
) -> dict[str, str] | None:
    """One file row keyed by the platform's headers, or None when nothing matchable is left."""
    email = normalize_email(contact.email, platform)
    phone = normalize_phone(contact.phone, platform, default_country_code)
    fn, ln = normalize_name(contact.first_name), normalize_name(contact.last_name)
    country = normalize_country(contact.country)
    zip_ = normalize_zip(contact.postal_code, country, platform)
    address = bool(fn and ln and country and zip_)
    if not (email or phone or address):
        return None
    if platform == "google":
        values = (_h(email), _h(phone), _h(fn), _h(ln), (country or "").upper(), zip_ or "")
    else:
        values = (_h(email), _h(phone), _h(fn), _h(ln), _h(zip_), _h(country))
    return dict(zip(HEADERS[platform], values, strict=True))


def write_audience(
    contacts: Iterable[AudienceContact],
    platform: Platform,
    path: Path,
    *,
    default_country_code: str | None = None,
) -> AudienceExport:
    """Write the consenting contacts' hashed identifiers as the platform's CSV at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    no_consent = skipped = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADERS[platform])
        writer.writeheader()
        for c in contacts:
            if not c.ad_consent:
                no_consent += 1
                continue
            row = audience_row(c, platform, default_country_code)
            if row is None:
                skipped += 1
                continue
            writer.writerow(row)
            ids.append(c.customer_id)
    return AudienceExport(
        platform=platform,
        path=str(path),
        rows=len(ids),
        customer_ids=ids,
        excluded_no_consent=no_consent,
        skipped_no_identifier=skipped,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
