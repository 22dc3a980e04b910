"""The right to erasure: remove a person from both stores and every file the workspace wrote.

Nothing is listed by hand, so a table or export added later is covered too:

* **warehouse** — every table with a ``customer_id``, ``email`` or ``phone`` column loses the rows
  holding the person's id or stored contact points (rollups included, so they stay consistent);
* **operations store** — every table with a ``customer_id`` column loses the person's rows, rows
  referencing those (the send ledger of their outbox messages) go first; every other text or
  JSON value holding their id, email or phone (audit records, campaign specs, reasons) is
  redacted in place;
* **files** — every file under the workspace outside its databases and secrets: CSV (also
  gzipped), Parquet and JSON lines lose the rows that mention the person (their id, email, phone,
  or the SHA-256 an ad audience holds instead), JSON and other text files have those values
  replaced by ``[erased]``; files that cannot be read as any of these are reported.

What remains is a salted hash of the id and of each contact point in ``suppressions`` (kind
``erased``, no customer id): :func:`is_erased` lets sending refuse the person and ingest refuses
their rows (:func:`erased_rows`).  The salt is a per-workspace secret (``secrets/erasure.key``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import JSON, String, Text, cast, delete, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from micromarketing.channels.audiences import normalize_email, normalize_phone, sha256_hex
from micromarketing.errors import NotFoundError
from micromarketing.privacy.results import ErasureReport
from micromarketing.store.lock import HOLDER_SUFFIX
from micromarketing.store.models import Base, OutboxMessage, Suppression
from micromarketing.store.schema import TableSpec
from micromarketing.tokens import load_or_create_secret

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext

ERASED = "[erased]"
SALT_FILE = Path("secrets") / "erasure.key"
_DIGITS = re.compile(r"[^0-9]")
_TEXT_SUFFIXES = {".html", ".htm", ".txt", ".md", ".eml", ".xml", ".log", ".svg", ".yaml", ".yml", ".toml"}


@dataclass
class Person:
    """One customer's id and the contact points and names stored for them."""

    customer_id: str
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)  # full names ("Zoë Quennell")


# -- salted hashes ------------------------------------------------------------------------------
def erasure_salt(ctx: StoreContext) -> str:
    """The workspace's erasure salt (created on first use, mode 0600)."""
    return load_or_create_secret(ctx.root / SALT_FILE).decode()


def subject_hash(salt: str, kind: str, value: str) -> str:
    """SHA-256 hex of ``salt:kind:normalised value`` (kind: ``id``, ``email`` or ``phone``).

    Emails are trimmed and lower-cased, phones reduced to their digits, ids trimmed — the same
    normalisation :func:`erased_rows` applies in SQL."""
    return hashlib.sha256(f"{salt}:{kind}:{_normalise(kind, value)}".encode()).hexdigest()


def _normalise(kind: str, value: str) -> str:
    if kind == "email":
        return value.strip().lower()
    if kind == "phone":
        return _DIGITS.sub("", value)
    return value.strip()


def person_hashes(salt: str, person: Person) -> set[str]:
    """The salted hashes kept for ``person``: their id and each email and phone number."""
    hashes = {subject_hash(salt, "id", person.customer_id)}
    hashes |= {subject_hash(salt, "email", e) for e in person.emails if e.strip()}
    hashes |= {subject_hash(salt, "phone", p) for p in person.phones if len(_normalise("phone", p)) >= 6}
    return hashes


def erased_hashes(ctx: StoreContext) -> set[str]:
    """Every hash of an erased person in the suppression list."""
    with ctx.ops.session() as s:
        return set(s.scalars(select(Suppression.subject_hash).where(
            Suppression.kind == "erased", Suppression.subject_hash.is_not(None))))


def is_erased(
    ctx: StoreContext, customer_id: str | None = None, email: str | None = None, phone: str | None = None
) -> bool:
    """True when the id, email or phone belongs to a person who was erased (never contact them)."""
    salt, known = erasure_salt(ctx), erased_hashes(ctx)
    candidates = [("id", customer_id), ("email", email), ("phone", phone)]
    return any(subject_hash(salt, kind, value) in known for kind, value in candidates if value)


def erased_rows(ctx: StoreContext, spec: TableSpec, rows: ir.Table) -> ir.Table | None:
    """The rows of ``rows`` (being ingested into ``spec``) that belong to an erased person, as
    ``_row``; None when no one was ever erased (the common case costs one query)."""
    known = erased_hashes(ctx)
    if not known:
        return None
    salt = erasure_salt(ctx)
    columns = set(rows.columns)
    hashed: list[ir.BooleanValue] = []
    if "customer_id" in columns:
        hashed.append(_sql_hash(salt, "id", rows.customer_id.strip()).isin(list(known)))
    if spec.name == "customers" and "email" in columns:
        hashed.append(_sql_hash(salt, "email", rows.email.strip().lower()).isin(list(known)))
    if spec.name == "customers" and "phone" in columns:
        hashed.append(_sql_hash(salt, "phone", rows.phone.re_replace("[^0-9]", "")).isin(list(known)))
    if not hashed:
        return None
    return rows.filter(ibis.or_(*hashed)).select("_row")


def _sql_hash(salt: str, kind: str, value: ir.StringValue) -> ir.StringValue:
    return ibis.literal(f"{salt}:{kind}:").concat(value).hexdigest("sha256")


# -- forget -------------------------------------------------------------------------------------
def find_person(ctx: StoreContext, customer_id: str) -> Person:
    """The person's stored contact points and names, from ``customers`` and their outbox rows."""
    person = Person(customer_id=customer_id)
    tables = ctx.warehouse.base_tables()
    if "customers" in tables:
        customers = ctx.table("customers")
        for row in customers.filter(customers.customer_id == customer_id).to_pyarrow().to_pylist():
            _add_contact(person, row)
    with ctx.ops.session() as s:
        for fields in s.scalars(select(OutboxMessage.fields).where(OutboxMessage.customer_id == customer_id)):
            _add_contact(person, fields or {})
    return person


def _add_contact(person: Person, row: dict[str, Any]) -> None:
    for key in ("email", "email_address"):
        if row.get(key):
            person.emails.add(str(row[key]))
    for key in ("phone", "mobile"):
        if row.get(key):
            person.phones.add(str(row[key]))
    full = " ".join(str(row[k]) for k in ("first_name", "last_name") if row.get(k))
    if full.strip():
        person.names.add(full.strip())


def forget(ctx: StoreContext, customer_id: str, *, actor: str = "cli") -> ErasureReport:
    """Erase ``customer_id`` everywhere and keep only their salted hashes in ``suppressions``.

    Raises :class:`NotFoundError` when nothing is held about the id and it was never erased;
    forgetting an erased person again removes anything that came back and reports it.
    """
    person = find_person(ctx, customer_id)
    salt = erasure_salt(ctx)
    hashes = person_hashes(salt, person)
    label = "erased:" + subject_hash(salt, "id", customer_id)[:16]
    already = subject_hash(salt, "id", customer_id) in erased_hashes(ctx)
    report = erase_people(ctx, [person], label=label)
    held = report.warehouse_rows or report.ops_rows or report.ops_redacted or report.files_rewritten
    if not held and not already:
        raise NotFoundError(f"customer {customer_id!r}: nothing is held about this id")
    with ctx.ops.session() as s:
        stored = set(s.scalars(select(Suppression.subject_hash).where(Suppression.subject_hash.in_(hashes))))
        new = sorted(hashes - stored)
        s.add_all(Suppression(customer_id=None, subject_hash=h, channel=None, kind="erased",
                              reason="right to erasure", source="privacy forget") for h in new)
    report.suppressions_added = len(new)
    report.already_erased = already
    ctx.audit("privacy.forget", label, _audit_details(report), actor=actor)
    return report


def _audit_details(report: ErasureReport) -> dict[str, Any]:
    return {
        "warehouse_rows": report.warehouse_rows, "ops_rows": report.ops_rows,
        "ops_redacted": report.ops_redacted, "files_rewritten": len(report.files_rewritten),
        "suppressions_added": report.suppressions_added,
    }


def erase_people(ctx: StoreContext, people: list[Person], *, label: str = ERASED) -> ErasureReport:
    """Remove ``people`` from the warehouse, the operations store and the workspace's files.

    ``label`` replaces their id where a record is kept but redacted (the audit log's subject).
    No suppression entry is written here (:func:`forget` adds it; retention does not).
    """
    ids = sorted({p.customer_id for p in people})
    stored = {e for p in people for e in p.emails}
    emails = sorted(stored | {e.strip().lower() for e in stored})
    phones = sorted({ph for p in people for ph in p.phones})
    warehouse = ctx.warehouse.delete_matching({"customer_id": ids, "email": emails, "phone": phones})
    ctx.warehouse.checkpoint()
    ops_rows, redacted = _erase_ops(ctx, ids, emails, phones, label)
    ctx.ops.checkpoint()
    matcher = _Matcher.of(people, ctx.settings.channels.sms.default_country_code)
    rewritten, skipped = [], []
    for path in workspace_files(ctx):
        outcome = _scrub_file(path, matcher)
        relative = str(path.relative_to(ctx.root))
        if outcome == "rewritten":
            rewritten.append(relative)
        elif outcome == "not inspected":
            skipped.append(relative)
    return ErasureReport(
        subject=label, warehouse_rows=warehouse, ops_rows=ops_rows, ops_redacted=redacted,
        files_rewritten=rewritten, files_not_inspected=skipped, suppressions_added=0,
    )


# -- operations store -------------------------------------------------------------------------
def _erase_ops(
    ctx: StoreContext, ids: list[str], emails: list[str], phones: list[str], label: str
) -> tuple[dict[str, int], dict[str, int]]:
    """Delete the people's rows (dependents first) and redact their values elsewhere."""
    deleted: dict[str, int] = {}
    redacted: dict[str, int] = {}
    owners = {t.name: t for t in Base.metadata.sorted_tables if "customer_id" in t.c}
    with ctx.ops.session() as s:
        for table in reversed(Base.metadata.sorted_tables):  # children before their parents
            if "customer_id" in table.c:
                n = s.execute(delete(table).where(table.c.customer_id.in_(ids))).rowcount
            else:
                n = 0
                for fk in table.foreign_keys:
                    parent = owners.get(fk.column.table.name)
                    if parent is not None:
                        mine = select(fk.column).where(parent.c.customer_id.in_(ids))
                        n += s.execute(delete(table).where(fk.parent.in_(mine))).rowcount
            if n:
                deleted[table.name] = int(n)
        needles = [*emails, *phones]
        for table in Base.metadata.sorted_tables:
            n = _redact_table(s, table, ids, needles, label)
            if n:
                redacted[table.name] = n
    return deleted, redacted


def _redact_table(s: Session, table: Any, ids: list[str], needles: list[str], label: str) -> int:
    """Replace the ids, emails and phones in ``table``'s text and JSON values; returns rows changed."""
    columns = [c for c in table.c if isinstance(c.type, JSON | Text | String) and not c.primary_key]
    if not columns or not (ids or needles):
        return 0
    conditions = []
    for c in columns:
        as_text = cast(c, Text)
        if isinstance(c.type, JSON):
            conditions += [as_text.contains(json.dumps(i), autoescape=True) for i in ids]
            conditions += [as_text.contains(json.dumps(n)[1:-1], autoescape=True) for n in needles]
        else:
            conditions += [c.in_(ids)] if ids else []
            conditions += [as_text.contains(n, autoescape=True) for n in needles]
    key = list(table.primary_key.columns)
    changed = 0
    for row in s.execute(select(*key, *columns).where(or_(*conditions))).mappings():
        values = {c.name: _redact_value(row[c.name], set(ids), needles, label) for c in columns}
        values = {k: v for k, v in values.items() if v != row[k]}
        if values:
            s.execute(update(table).where(*[k == row[k.name] for k in key]).values(**values))
            changed += 1
    return changed


def _redact_value(value: Any, ids: set[str], needles: list[str], label: str) -> Any:
    if isinstance(value, str):
        if value in ids:
            return label
        for needle in needles:
            value = re.sub(re.escape(needle), ERASED, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, dict):
        return {_redact_value(k, ids, needles, label): _redact_value(v, ids, needles, label)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, ids, needles, label) for v in value]
    return value


# -- files ----------------------------------------------------------------------------------------
def workspace_files(ctx: StoreContext) -> Iterator[Path]:
    """Every file under the workspace except its databases, their logs and lock files, the
    settings and the secrets (the files that may hold exported personal data)."""
    wh = ctx.warehouse.path.resolve()
    skip = {wh, Path(str(wh) + ".wal"), Path(str(wh) + HOLDER_SUFFIX)}
    skip.add((ctx.root / "micromarketing.toml").resolve())
    url = make_url(ctx.settings.ops.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        ops = (ctx.root / url.database).resolve()
        skip |= {ops, *(Path(str(ops) + s) for s in ("-wal", "-shm", "-journal"))}
    secrets = (ctx.root / "secrets").resolve()
    for dirpath, _dirs, files in os.walk(ctx.root):
        for name in sorted(files):
            path = (Path(dirpath) / name).resolve()
            if path not in skip and not path.is_relative_to(secrets) and path.is_file():
                yield path


@dataclass
class _Matcher:
    """Decides whether a value or a record is about one of the people being erased."""

    ids: set[str]
    emails: set[str]  # lower-cased
    phone_digits: set[str]
    hashes: set[str]  # what ad audiences hold instead (SHA-256 hex of normalised email/phone)
    texts: list[str]  # substrings to replace in free text (emails, phones as stored, names)

    @classmethod
    def of(cls, people: Iterable[Person], country_code: str | None) -> _Matcher:
        people = list(people)
        emails = {e.strip().lower() for p in people for e in p.emails if e.strip()}
        phones = {ph for p in people for ph in p.phones if ph.strip()}
        hashes: set[str] = set()
        for email in emails:
            for platform in ("google", "meta"):
                normal = normalize_email(email, platform)  # type: ignore[arg-type]
                if normal:
                    hashes.add(sha256_hex(normal))
        for phone in phones:
            for platform in ("google", "meta"):
                normal = normalize_phone(phone, platform, country_code)  # type: ignore[arg-type]
                if normal:
                    hashes.add(sha256_hex(normal))
        names = {n for p in people for n in p.names if len(n) >= 3}
        texts = sorted(emails | phones | names, key=len, reverse=True)
        digits = {_DIGITS.sub("", ph) for ph in phones} - {""}
        return cls({p.customer_id for p in people}, emails, digits, hashes, texts)

    def cell(self, value: Any) -> bool:
        """True when one field's value is the person's id, email, phone or hashed identifier."""
        if value is None:
            return False
        text = str(value).strip()
        if not text:
            return False
        low = text.lower()
        if text in self.ids or low in self.emails or low in self.hashes:
            return True
        if not self.phone_digits or re.search(r"[A-Za-z]", text):
            return False
        return _DIGITS.sub("", text) in self.phone_digits

    def record(self, values: Iterable[Any]) -> bool:
        return any(self.cell(v) for v in values)

    def redact_text(self, text: str) -> str:
        """Free text with the contact points, names and (whole-word) ids replaced."""
        for needle in self.texts:
            text = re.sub(re.escape(needle), ERASED, text, flags=re.IGNORECASE)
        for digits in self.phone_digits:  # the number however it is written: +33 6 98…, (650) 555-…
            text = re.sub(r"\+?" + r"[\s().-]*".join(digits) + r"(?!\d)", ERASED, text)
        for customer_id in self.ids:
            text = re.sub(rf"(?<![\w-]){re.escape(customer_id)}(?![\w-])", ERASED, text)
        return text

    def redact_json(self, value: Any) -> Any:
        """JSON with records about the person dropped and other mentions redacted."""
        if isinstance(value, list):
            kept = [v for v in value if not (isinstance(v, dict) and self.record(v.values()))]
            return [self.redact_json(v) for v in kept]
        if isinstance(value, dict):
            return {k: self.redact_json(v) for k, v in value.items()}
        if isinstance(value, str):
            return ERASED if self.cell(value) else self.redact_text(value)
        return value


def _scrub_file(path: Path, matcher: _Matcher) -> str:
    """Rewrite ``path`` without the people: ``rewritten``, ``unchanged`` or ``not inspected``."""
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return _scrub_csv(path, matcher)
        if name.endswith(".parquet"):
            return _scrub_parquet(path, matcher)
        if name.endswith((".jsonl", ".ndjson")):
            return _scrub_lines(path, matcher)
        if name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            cleaned = matcher.redact_json(data)
            if cleaned == data:
                return "unchanged"
            return _replace(path, json.dumps(cleaned, ensure_ascii=False, indent=2).encode())
        raw = path.read_bytes()
        if b"\0" in raw[:4096] and path.suffix.lower() not in _TEXT_SUFFIXES:
            return "not inspected"
        text = raw.decode("utf-8")
    except (UnicodeDecodeError, json.JSONDecodeError, pa.ArrowInvalid, OSError, EOFError, csv.Error):
        return "not inspected"
    cleaned_text = matcher.redact_text(text)
    return _replace(path, cleaned_text.encode()) if cleaned_text != text else "unchanged"


def _scrub_csv(path: Path, matcher: _Matcher) -> str:
    gz = path.name.lower().endswith(".gz")
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    text = raw.decode("utf-8-sig")
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    kept = [r for i, r in enumerate(rows) if i == 0 or not matcher.record(r)]
    if len(kept) == len(rows):
        return "unchanged"
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(kept)
    data = out.getvalue().encode()
    return _replace(path, gzip.compress(data) if gz else data)


def _scrub_parquet(path: Path, matcher: _Matcher) -> str:
    table = pq.read_table(path)
    strings = [n for n, t in zip(table.column_names, table.schema.types, strict=True)
               if pa.types.is_string(t) or pa.types.is_large_string(t)]
    if not strings or not table.num_rows:
        return "unchanged"
    about = pa.array([matcher.record(values) for values in zip(*(table[n].to_pylist() for n in strings),
                                                                 strict=True)])
    if not pc.any(about).as_py():
        return "unchanged"
    buffer = io.BytesIO()
    pq.write_table(table.filter(pc.invert(about)), buffer)
    return _replace(path, buffer.getvalue())


def _scrub_lines(path: Path, matcher: _Matcher) -> str:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            value = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            value = line
        values = value.values() if isinstance(value, dict) else [value]
        if line.strip() and (matcher.record(values) or matcher.redact_text(line) != line):
            continue
        kept.append(line)
    return _replace(path, "".join(kept).encode()) if len(kept) != len(lines) else "unchanged"


def _replace(path: Path, data: bytes) -> str:
    """Write ``data`` over ``path`` atomically (a crash leaves the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return "rewritten"
