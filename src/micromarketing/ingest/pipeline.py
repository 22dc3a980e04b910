"""One file in, validated rows upserted, rejects quarantined: :func:`ingest_file`.

The file is staged in the warehouse as text (``Warehouse.stage_text`` / ``stage_jsonl`` /
``stage_parquet``) with a row number, validated in one vectorised pass
(:mod:`micromarketing.ingest.validate`), de-duplicated on the table key (the last valid
occurrence wins) and upserted.  Rejected rows, with the first failing field and the reason, are
written to ``<workspace>/<settings.ingest.quarantine_dir>/<kind>-<file>-<sha256 prefix>.csv``;
the name depends on the file's content, so re-ingesting the same file rewrites the same
quarantine file and leaves the table unchanged.  Each run is recorded as an
:class:`~micromarketing.store.models.IngestRun`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from micromarketing.errors import DataError, IngestError
from micromarketing.ingest.references import orphans, workspace_currency
from micromarketing.ingest.results import IngestResult
from micromarketing.ingest.validate import Limits, checked_table
from micromarketing.privacy.erasure import erased_rows
from micromarketing.progress import ProgressCallback, noop_progress
from micromarketing.store.models import IngestRun
from micromarketing.store.schema import TABLES, TableSpec

if TYPE_CHECKING:
    from micromarketing.store.context import StoreContext

FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
QUARANTINE_META = ("file", "row", "field", "reason")
# Rows of a person erased by `privacy forget`: refused, quarantined without their values.
ERASED_REASON = "erased customer (right to erasure): not ingested again"
_STEPS = 5


def ingest_file(
    ws: StoreContext, kind: str, path: Path, progress: ProgressCallback = noop_progress
) -> IngestResult:
    """Validate one file of ``kind`` and upsert its valid rows; quarantine the others.

    ``kind`` is a table of :data:`micromarketing.store.schema.TABLES`; the format follows the
    extension (.csv, .csv.gz, .parquet, .jsonl, .ndjson).  Rows are checked against the
    table's spec; rejected rows go to a quarantine CSV with columns ``file``, ``row`` (the
    1-based data row number: header excluded for CSV, the line number for JSONL), ``field``,
    ``reason`` and the row's raw values (``raw_line`` holds the text of records the reader could
    not split into fields).  Duplicate keys within the file: the last valid occurrence wins, the
    earlier ones are rejected.  Implausible values (``settings.ingest`` ranges) and rows in a
    currency other than the workspace's are rejected too (see :mod:`.validate`,
    :mod:`.references`); rows referencing unknown customers are accepted and reported.  Raises
    :class:`IngestError` for an unknown kind, a missing or unreadable file (a directory, a
    truncated gzip), or a file lacking a required column.
    """
    path = Path(path)
    spec = TABLES.get(kind)
    if spec is None:
        raise IngestError(f"unknown kind {kind!r} (use one of: {', '.join(TABLES)})")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, not a file (name the files in it)")
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    fmt = _format(path)
    started = datetime.now(UTC)
    step = f"ingest {path.name}"
    progress(step, 0, _STEPS)
    wh = ws.warehouse
    stage = f"_ingest_{uuid.uuid4().hex[:12]}"
    # Hash while DuckDB reads: hashlib releases the GIL on large buffers, DuckDB while it runs.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(_sha256, path)
        try:
            staged, parse_rejects, names = _stage(wh, path, fmt, stage)
        except DataError as exc:
            _cleanup(wh, stage)
            raise IngestError(str(exc)) from None
        except BaseException:
            _cleanup(wh, stage)
            raise
        digest = hashing.result()
    try:
        progress(step, 1, _STEPS)
        if fmt == "jsonl":
            # JSON lines carry their keys line by line: a key that no line has is missing in every
            # row, which the row checks report row by row (a file of broken lines is quarantined
            # line by line instead of failing whole); only a CSV/Parquet header fails a file.
            absent = [c for c in spec.column_names if c not in names]
            staged = staged.mutate(**{c: ibis.null("string") for c in absent})
            names = names + absent
        # Counted once: whether the file has rows, and how many were read (one query each on Spark).
        staged_rows, unparsed_rows = _count(staged), _count(parse_rejects)
        present, warnings = _match_columns(
            path, spec, names, has_rows=bool(staged_rows or unparsed_rows), delimited=fmt == "csv"
        )
        cfg = ws.settings.ingest
        currency = None
        if "currency" in spec.column_names:
            currency = workspace_currency(wh, cfg, path, kind, staged, names)
        limits = Limits(
            min_date=cfg.min_date, max_at=started + cfg.max_future_delta, max_future=cfg.max_future,
            max_amount=cfg.max_amount, currency=currency, fx=cfg.fx,
        )
        checked = wh.materialize_temp(
            f"{stage}_checked", checked_table(staged, spec, present, cfg.currencies, limits)
        )
        progress(step, 2, _STEPS)
        rejects = _rejects(wh, checked, spec, stage)
        erased = erased_rows(ws, spec, checked.filter(checked._reason.isnull()))
        if erased is not None:  # an erased person's rows are refused, their values not kept
            erased = erased.anti_join(rejects, "_row")
            rejects = wh.materialize_temp(stage + "_erased", rejects.union(erased.select(
                "_row", _field=ibis.literal("customer_id"), _reason=ibis.literal(ERASED_REASON),
                _label=ibis.literal(f"customer_id: {ERASED_REASON}"),
            )))
        progress(step, 3, _STEPS)
        keep = checked.filter(checked._reason.isnull())
        keep = keep.anti_join(rejects, "_row")
        accepted = wh.upsert(spec.name, keep.select(*spec.column_names, *[d.name for d in spec.derived]))
        orphan_count, orphan_examples = orphans(wh, kind, keep)
        if orphan_count:
            verb = "rows reference" if orphan_count > 1 else "row references"
            warnings.append(
                f"{orphan_count:,} accepted {verb} customers not in "
                f"customers (e.g. {', '.join(orphan_examples)}); kept, as the customers may arrive later"
            )
        progress(step, 4, _STEPS)
        counted = _reason_counts(rejects, parse_rejects)
        rejected = sum(counted.values())
        rows_read = staged_rows + unparsed_rows
        quarantine = None
        if rejected:
            quarantine = _write_quarantine(ws, kind, path, digest, staged, names, rejects, parse_rejects)
    except DataError as exc:
        raise IngestError(str(exc)) from None
    finally:
        _cleanup(wh, stage)
    if accepted + rejected != rows_read:  # pragma: no cover - an invariant, not a user error
        raise AssertionError(f"{path}: accepted {accepted} + rejected {rejected} != read {rows_read}")
    with ws.ops.session() as session:
        session.add(
            IngestRun(
                kind=kind, path=str(path.resolve()), sha256=digest, rows_read=rows_read, accepted=accepted,
                rejected=rejected, quarantine_path=str(quarantine) if quarantine else None,
                started_at=started, finished_at=datetime.now(UTC),
            )
        )
    progress(step, _STEPS, _STEPS)
    return IngestResult(
        kind=kind, path=path, rows_read=rows_read, accepted=accepted, rejected=rejected,
        quarantine_path=quarantine, reasons=counted, warnings=tuple(warnings), sha256=digest,
        currency=currency, orphans=orphan_count, orphan_examples=orphan_examples,
    )


def _cleanup(wh, stage: str) -> None:  # type: ignore[no-untyped-def]
    """Drop every temp table/view this run may have created (names start with ``stage``)."""
    for suffix in ("", "_rejects", "_errors", "_scans", "_lines", "_lines_rejects", "_lines_errors",
                   "_lines_scans", "_checked", "_bad", "_dups", "_erased"):
        wh.drop_temp(stage + suffix)


# -- reading ------------------------------------------------------------------------------------
def _format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix) and (suffix != ".csv" or not name.endswith(".csv.gz")):
            return fmt
    raise IngestError(f"{path}: unsupported file type (use {', '.join(FORMATS)})")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _csv_header(path: Path) -> list[str]:
    """The header record of a CSV file (BOM stripped), read with Python's csv module."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as raw:
            head = raw.read(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:  # EOFError: a truncated .gz
        raise IngestError(f"{path}: cannot be read: {exc}") from None
    if not head.strip():
        raise IngestError(f"{path}: file is empty (a CSV file needs a header line)")
    text = head.decode("utf-8-sig", errors="replace")
    try:
        header = next(csv.reader(io.StringIO(text, newline="")))
    except (csv.Error, StopIteration) as exc:
        raise IngestError(f"{path}: line 1: cannot read the header: {exc}") from None
    if any("\ufffd" in name for name in header):
        raise IngestError(f"{path}: line 1: the header is not valid UTF-8")
    return header


def _normalise(names: list[str], path: Path) -> list[str]:
    out = [n.strip().lower() for n in names]
    seen: set[str] = set()
    for i, name in enumerate(out, start=1):
        if not name:
            raise IngestError(f"{path}: header column {i} has no name")
        if name in seen or name == "_row":
            raise IngestError(f"{path}: header column {name!r} appears twice (or is reserved)")
        seen.add(name)
    return out


def _stage(wh, path: Path, fmt: str, stage: str) -> tuple[ir.Table, ir.Table, list[str]]:  # type: ignore[no-untyped-def]
    """Staged raw rows, reader rejects and the (normalised) column names of the file."""
    if fmt == "csv":
        names = _normalise(_csv_header(path), path)
        staged, rejects = wh.stage_text(path, stage, names)
        return staged, rejects, names
    if fmt == "jsonl":
        staged, rejects = wh.stage_jsonl(path, stage)
        names = [c for c in staged.columns if c != "_row"]
        lowered = _normalise(names, path)
        staged = staged.rename(dict(zip(lowered, names, strict=True)))
        return staged, rejects, lowered
    staged = wh.stage_parquet(path, stage)
    names = [c for c in staged.columns if c != "_row"]
    lowered = _normalise(names, path)
    staged = staged.rename(dict(zip(lowered, names, strict=True)))
    schema = {"_row": "int64", "_field": "string", "_error": "string", "_reason": "string", "_raw": "string"}
    empty = ibis.memtable({c: [] for c in schema}, schema=schema)
    rejects = wh.materialize_temp(stage + "_rejects", empty)
    return staged, rejects, lowered


def _count(table: ir.Table) -> int:
    return int(table.count().execute())


def _match_columns(
    path: Path, spec: TableSpec, names: list[str], has_rows: bool, delimited: bool = False
) -> tuple[list[str], list[str]]:
    """The spec columns present in the file, and warnings; a missing required column fails the file.

    For a CSV file (``delimited``) whose header is one name holding a ``;``, tab or ``|``, the
    error adds a hint that the file looks delimited by it.
    """
    present = [c for c in spec.column_names if c in names]
    missing = [c.name for c in spec.columns if c.required and c.name not in names]
    if missing and (has_rows or names):
        raise IngestError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"for {spec.name}{_delimiter_hint(names) if delimited else ''}"
        )
    derived = {d.name for d in spec.derived}
    extra = [n for n in names if n not in spec.column_names]
    warnings = []
    if extra:
        plural = "s" if len(extra) > 1 else ""
        note = " (derived columns are computed, not read)" if derived & set(extra) else ""
        warnings.append(f"ignored column{plural} not in {spec.name}: {', '.join(extra)}{note}")
    return present, warnings


def _delimiter_hint(names: list[str]) -> str:
    """``" (the header looks semicolon-delimited; ...)"`` when a one-column header holds another delimiter."""
    if len(names) != 1:
        return ""
    for delim, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if delim in names[0]:
            return f" (the header looks {label}-delimited; ingest reads comma-separated CSV)"
    return ""


# -- rejects and quarantine ---------------------------------------------------------------------
def _rejects(wh, checked: ir.Table, spec: TableSpec, stage: str) -> ir.Table:  # type: ignore[no-untyped-def]
    """Temp table of rejected rows (``_row``, ``_field``, ``_reason``, ``_label``): invalid + superseded."""
    bad = checked.filter(checked._reason.notnull()).select(
        "_row", "_field", "_reason", _label=checked._field.concat(": ", checked._reason)
    )
    valid = checked.filter(checked._reason.isnull())
    key = list(spec.key)
    dups = wh.materialize_temp(
        stage + "_dups",
        valid.group_by(key).aggregate(_last=valid._row.max(), _n=valid._row.count()).filter(ibis._._n > 1),
    )
    label = "+".join(key)
    superseded = valid.join(dups, key).filter(valid._row < dups._last)
    superseded = superseded.select(
        "_row",
        _field=ibis.literal(label),
        _reason=ibis.literal("duplicate key, superseded by row ").concat(superseded._last.cast("string")),
        _label=ibis.literal(f"{label}: duplicate key, superseded by a later row"),
    )
    return wh.materialize_temp(stage + "_bad", bad.union(superseded))


def _reason_counts(rejects: ir.Table, parse_rejects: ir.Table) -> dict[str, int]:
    parse = parse_rejects.select(_label=_parse_label(parse_rejects))
    both = rejects.select("_label").union(parse)
    frame = both.group_by("_label").aggregate(n=both.count()).order_by(ibis.desc("n"), "_label").to_pyarrow()
    labels, counts = frame["_label"].to_pylist(), frame["n"].to_pylist()
    return {label: int(n) for label, n in zip(labels, counts, strict=True)}


_READER_ERRORS = {
    "MISSING COLUMNS": "too few fields",
    "TOO MANY COLUMNS": "too many fields",
    "INVALID ENCODING": "invalid UTF-8",
    "UNQUOTED VALUE": "unterminated or misplaced quote",
    "LINE SIZE OVER MAXIMUM": "line too long",
    "INVALID JSON": "invalid JSON",
    "NOT AN OBJECT": "not a JSON object",
    "DUPLICATE KEY": "keys that differ only by case",
}


def _parse_field(parse_rejects: ir.Table) -> ir.StringValue:
    """Reader errors about the record's shape name ``(row)``; an encoding error or colliding JSON
    keys name the column."""
    error = parse_rejects._error
    return ibis.ifelse(
        error.isin(["INVALID ENCODING", "DUPLICATE KEY"]) & (parse_rejects._field != ""),
        parse_rejects._field, "(row)",
    )


def _parse_reason(parse_rejects: ir.Table) -> ir.StringValue:
    return parse_rejects._error.substitute(_READER_ERRORS, else_=parse_rejects._error.lower())


def _parse_label(parse_rejects: ir.Table) -> ir.StringValue:
    """A countable label for reader errors: ``field: reason`` without the per-line detail."""
    return _parse_field(parse_rejects).concat(": ", _parse_reason(parse_rejects))


def _write_quarantine(  # type: ignore[no-untyped-def]
    ws, kind: str, path: Path, digest: str, staged: ir.Table, names: list[str],
    rejects: ir.Table, parse_rejects: ir.Table,
) -> Path:
    folder = ws.root / ws.settings.ingest.quarantine_dir
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)
    target = folder / f"{kind}-{stem}-{digest[:12]}.csv"
    raw_names = {n: (f"raw_{n}" if n in (*QUARANTINE_META, "raw_line") else n) for n in names}
    joined = rejects.join(staged, "_row", how="left")
    valued = joined.select(
        file=ibis.literal(str(path)), row=joined._row, field=joined._field, reason=joined._reason,
        **{raw_names[n]: ibis.ifelse(joined._reason == ERASED_REASON, ibis.null(dt.string), joined[n])
           for n in names},
        raw_line=ibis.null(dt.string),
    )
    unparsed = parse_rejects.select(
        file=ibis.literal(str(path)), row=parse_rejects._row,
        field=_parse_field(parse_rejects),
        reason=_parse_reason(parse_rejects).concat(" (", parse_rejects._reason, ")"),
        **{raw_names[n]: ibis.null(dt.string) for n in names}, raw_line=parse_rejects._raw,
    )
    ws.warehouse.write_csv(valued.union(unparsed).order_by("row"), target)
    return target
